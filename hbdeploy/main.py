"""The `hbdeploy` program: Fabric's own CLI, built on hbdeploy's task collection."""

from __future__ import annotations

import sys

from fabric import Config, Executor
from fabric.main import Fab
from invoke.exceptions import Exit

from . import __version__
from .cli import end_runs_cleanly_on_signals
from .tasks import namespace

HELP = ("--help", "-h")


def help_first(argv: list[str]) -> list[str]:
    """``hbdeploy standby --help`` as ``hbdeploy --help standby``: invoke would take the
    ``--help`` for the task's positional NODE and run the task."""
    names = set(namespace.task_names) | {a for t in namespace.task_names
                                         for a in namespace[t].aliases}
    for i, token in enumerate(argv[1:], start=1):
        if token in names:
            if namespace[token].positional and any(t in HELP for t in argv[i + 1:]):
                return [*argv[:i], "--help", token]
            break
    return argv


class Program(Fab):
    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        end_runs_cleanly_on_signals()
        super().run(help_first(sys.argv if argv is None else argv), exit)

    def update_config(self) -> None:
        """Fabric's, with a missing ``-S`` file said in one line: Fabric raises
        FileNotFoundError for it, a traceback (`fab` itself still does)."""
        try:
            super().update_config()
        except FileNotFoundError as exc:
            if exc.filename != self.args["ssh-config"].value:
                raise
            raise Exit(f"error: the ssh config file {exc.filename} (-S/--ssh-config) does not "
                       "exist", code=2) from None


program = Program(
    name="hbdeploy",
    version=__version__,
    namespace=namespace,
    executor_class=Executor,
    config_class=Config,
)
