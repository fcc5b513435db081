"""The console entry point: a Ctrl-C or SIGTERM at any moment, even while Python is still
importing hbdeploy, ends the program with exit code 130 and one line, never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import NoReturn

# Set by every interrupt. The KeyboardInterrupt a signal handler raises is lost where the
# main thread runs code whose exceptions Python ignores, a weakref callback or __del__ (CI:
# a SIGTERM landed in `WeakSet._remove` during a garbage collection, "Exception ignored
# in ...", and the deploy went on to the end); this is not (deploy._parallel, its steps).
INTERRUPTED = threading.Event()


def interrupt(signum: int, _frame: object) -> None:
    """Raise KeyboardInterrupt, as Ctrl-C does, and set INTERRUPTED."""
    INTERRUPTED.set()
    if signum != signal.SIGINT:
        signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of an interrupt that Python dropped (INTERRUPTED)."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def end_runs_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGHUP interrupt a run like Ctrl-C (main thread only): the step
    under way on each host ends, no later step starts, the run lock is released. Ctrl-C
    itself keeps Python's behaviour, and sets INTERRUPTED too."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signum != signal.SIGINT or signal.getsignal(signum) is signal.default_int_handler:
            signal.signal(signum, interrupt)


def exit_interrupted(message: str) -> NoReturn:
    """Print ``message`` and end the process now with exit code 130.

    Python's own exit would take its signal handlers down before the process is gone
    (under load that took over 0.3 s), so an operator's next SIGTERM in that window
    killed it with SIGTERM's default action instead; and a non-daemon worker would be
    waited for. By now the step under way on each host has ended (or a second signal
    asked not to wait for it) and the run lock is released: nothing is left to do.
    """
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # from here on the exit code is 130
    print(message, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def main() -> None:
    end_runs_cleanly_on_signals()
    try:
        from .main import program

        program.run()
    except KeyboardInterrupt:
        exit_interrupted("interrupted")
    except BrokenPipeError:  # `hbdeploy --list | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
