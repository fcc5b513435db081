"""The console entry point: a Ctrl-C or SIGTERM at any moment, even while Python is still
importing hbdeploy, ends the program with exit code 130 and one line, never a traceback."""

from __future__ import annotations

import os
import signal
import sys


def interrupt(signum: int, _frame: object) -> None:
    """Raise KeyboardInterrupt, as Ctrl-C does."""
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise KeyboardInterrupt


def end_runs_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGHUP interrupt a run like Ctrl-C (main thread only): the step
    under way on each host ends, no later step starts, the run lock is released."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def main() -> None:
    end_runs_cleanly_on_signals()
    try:
        from .main import program

        program.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `hbdeploy --list | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
