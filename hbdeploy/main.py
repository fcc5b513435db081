"""The `hbdeploy` program: Fabric's own CLI, built on hbdeploy's task collection."""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .tasks import namespace

program = Fab(
    name="hbdeploy",
    version=__version__,
    namespace=namespace,
    executor_class=Executor,
    config_class=Config,
)
