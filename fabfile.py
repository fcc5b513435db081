"""`fab` entry point: the same task collection as the `hbdeploy` program."""

from hbdeploy.cli import end_runs_cleanly_on_signals
from hbdeploy.tasks import namespace as ns

end_runs_cleanly_on_signals()  # SIGTERM/SIGHUP end a run as Ctrl-C does

__all__ = ["ns"]
