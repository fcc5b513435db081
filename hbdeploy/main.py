"""The `hbdeploy` program: Fabric's own CLI, built on hbdeploy's task collection."""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .cli import end_runs_cleanly_on_signals
from .tasks import namespace


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
