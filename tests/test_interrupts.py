"""An interrupt whose KeyboardInterrupt Python swallowed still stops a run (cli.INTERRUPTED)."""

from __future__ import annotations

import signal
import threading
import weakref
from collections.abc import Iterator

import pytest

from hbdeploy import cli
from hbdeploy.deploy import _parallel


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    cli.INTERRUPTED.clear()
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_an_interrupt_lost_in_a_weakref_callback_still_stops_the_parallel_steps(
        handlers: None) -> None:
    """CI: SIGTERM's handler ran inside `WeakSet._remove` during a garbage collection;
    Python printed "Exception ignored in ..." and the deploy went on to the end."""

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _: cli.interrupt(signal.SIGTERM, None))
    del thing  # the callback raises KeyboardInterrupt, and Python ignores it
    assert ref() is None and cli.INTERRUPTED.is_set()
    cancel = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        _parallel(lambda item: item, [1, 2], cancel)
    assert cancel.is_set()  # the workers' next step is not started


def test_ctrl_c_keeps_raising_and_sets_the_flag(handlers: None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cli.end_runs_cleanly_on_signals()
    assert signal.getsignal(signal.SIGTERM) is cli.interrupt
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert cli.INTERRUPTED.is_set()
    assert signal.getsignal(signal.SIGINT) is cli.interrupt  # a second Ctrl-C raises again
