"""The `hbdeploy` program: Fabric's own CLI, built on hbdeploy's task collection."""

from __future__ import annotations

import signal

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .tasks import namespace


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP end a run as Ctrl-C does: the step under way on each host ends,
    no later step starts, the run lock is released (tasks.reports_errors)."""
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise KeyboardInterrupt


def end_runs_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGHUP interrupt a run like Ctrl-C (main thread only)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


class Program(Fab):
    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        end_runs_cleanly_on_signals()
        super().run(argv, exit)


program = Program(
    name="hbdeploy",
    version=__version__,
    namespace=namespace,
    executor_class=Executor,
    config_class=Config,
)
