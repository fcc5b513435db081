"""Running host commands for the lab, with errors that say what failed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence

from ..errors import HbdeployError

Report = Callable[[str], None]


class LabError(HbdeployError):
    """The lab cannot do what was asked; the message says why."""


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 120,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; LabError with its stderr when it fails and ``check`` is set."""
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                                input=input_text, check=False)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)}: no answer within {timeout:.0f}s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise LabError(f"{' '.join(cmd)} failed ({result.returncode}): {' | '.join(detail)}")
    return result


def run_with_progress(cmd: Sequence[str], label: str, report: Report,
                      every: float = 5.0, timeout: float = 1800) -> None:
    """Run a long command, reporting its latest output line every ``every`` seconds."""
    start = last = time.monotonic()
    tail: list[str] = []
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail, line.rstrip()][-20:]
        now = time.monotonic()
        if now - last >= every:
            report(f"{label}: {line.strip()[:70]} ({now - start:.0f}s)")
            last = now
        if now - start > timeout:
            proc.kill()
            raise LabError(f"{label}: no end after {timeout:.0f}s")
    if proc.wait() != 0:
        raise LabError(f"{label} failed ({proc.returncode}): " + " | ".join(tail[-5:]))
    report(f"{label}: done in {time.monotonic() - start:.0f}s")


REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def check_requirements() -> None:
    """One clear line when the lab cannot run here: not root, not Linux, a tool missing."""
    if os.uname().sysname != "Linux":
        raise LabError("the lab needs Linux (systemd-nspawn and network namespaces)")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, systemd-nspawn): run it as root")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise LabError(f"the lab needs these packages: apt-get install {' '.join(missing)}")


def poll(what: str, test: Callable[[], bool], deadline: float, interval: float = 0.2) -> float:
    """Call ``test`` until it is true and return the seconds that took; LabError naming
    ``what`` after ``deadline`` seconds."""
    start = time.monotonic()
    end = start + deadline
    while True:
        if test():
            return time.monotonic() - start
        if time.monotonic() > end:
            raise LabError(f"{what}: not within {deadline:.0f}s")
        time.sleep(interval)
