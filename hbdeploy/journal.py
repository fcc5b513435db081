"""heartbeat's journal on a node: the shell command that reads its recent lines."""

from __future__ import annotations

UNIT = "heartbeat.service"


def recent(seconds: int, unit: str | None = UNIT) -> str:
    """A command printing the messages ``unit`` (every unit: None) logged in the last
    ``seconds``; nothing, and no error, where journald has none."""
    where = f"-u {unit} " if unit else ""
    return f"journalctl {where}--since=-{seconds}s --no-pager -o cat 2>/dev/null"
