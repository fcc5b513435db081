"""hbdeploy's tasks for `fab`: an ops folder's ``fabfile.py`` needs one line,
``from hbdeploy.fabfile import ns`` (``hbdeploy init`` writes it)."""

from .cli import end_runs_cleanly_on_signals
from .tasks import namespace as ns

end_runs_cleanly_on_signals()  # SIGTERM/SIGHUP end a run as Ctrl-C does

__all__ = ["ns"]
