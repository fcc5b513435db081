"""The `hbdeploy` program: Fabric's own CLI, built on hbdeploy's task collection."""

from __future__ import annotations

import signal

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .cli import interrupt
from .tasks import namespace


def end_runs_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGHUP interrupt a run like Ctrl-C (main thread only): the step
    under way on each host ends, no later step starts, the run lock is released."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


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
