"""Outages as a user sees them: an HTTP probe of a floating IP from outside the nodes, and the
lab's partition and crash scenarios timed with it (used by bench/partitions.py and the tests).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .lab import Lab
from .network import addresses, node_ns
from .sh import LabError

PROBE_INTERVAL = 0.05  # seconds between two probes: the figures' resolution
PROBE_TIMEOUT = 0.2


def http_answer(ip: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The node answering HTTP on ``ip`` (the lab's probe server), or None."""
    try:
        with urllib.request.urlopen(f"http://{ip}/", timeout=timeout) as response:
            return response.read().decode().strip()
    except OSError:
        return None


PENDING = "\0pending"  # a probe sent whose answer has not come back yet (``overlap``)


@dataclass
class HttpProbe:
    """GET http://IP/ every ``interval`` seconds from this machine, in a thread; keeps every
    (time sent, answering node or None). Without ``overlap`` a probe waits for the one before
    it, so while the IP does not answer probes are ``timeout`` apart (the resolution then);
    with ``overlap`` each probe has a thread of its own and the resolution is ``interval``
    throughout."""

    ip: str
    interval: float = PROBE_INTERVAL
    timeout: float = PROBE_TIMEOUT
    overlap: bool = False
    answers: list[tuple[float, str | None]] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HttpProbe:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=5 + self.timeout)
        self.stopped = time.monotonic()

    def _loop(self) -> None:
        workers = int(self.timeout / self.interval) + 2 if self.overlap else 0
        pool = ThreadPoolExecutor(max_workers=workers) if workers else None
        next_at = time.monotonic()
        while not self._stop.is_set():
            sent = time.monotonic()
            if pool is None:
                self.answers.append((sent, http_answer(self.ip, self.timeout)))
            else:
                self.answers.append((sent, PENDING))
                pool.submit(self._one, len(self.answers) - 1, sent)
            next_at = max(next_at + self.interval, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        if pool is not None:
            pool.shutdown(wait=True)  # every answer in before the figures are read

    def _one(self, slot: int, sent: float) -> None:
        self.answers[slot] = (sent, http_answer(self.ip, self.timeout))

    def _done(self) -> list[tuple[float, str | None]]:
        return [(sent, answer) for sent, answer in self.answers if answer != PENDING]

    @property
    def failures(self) -> int:
        """How many probes got no answer."""
        return sum(1 for _, answer in self._done() if answer is None)

    @property
    def achieved_rate(self) -> float:
        """Probes per second actually sent."""
        return len(self._done()) / max(self.stopped - self.started, 1e-9)

    def servers(self) -> set[str]:
        """Every node that answered."""
        return {answer for _, answer in self._done() if answer}

    def unanswered(self, start: float, end: float | None = None) -> float:
        """Seconds between ``start`` and ``end`` during which the IP did not answer: each
        run of failed probes counts from its first failure to the next answer."""
        end = time.monotonic() if end is None else end
        total, down_since = 0.0, None
        for sent, answer in self._done():
            if sent < start or sent > end:
                continue
            if answer is None and down_since is None:
                down_since = sent
            elif answer is not None and down_since is not None:
                total += sent - down_since
                down_since = None
        if down_since is not None:
            total += end - down_since
        return total

    def first_answer_after(self, start: float, other_than: str = "") -> float | None:
        """Seconds after ``start`` of the first answer from a node other than ``other_than``."""
        for sent, answer in self._done():
            if sent >= start and answer is not None and answer != other_than:
                return sent - start
        return None

    def last_failure(self) -> float | None:
        return max((sent for sent, answer in self._done() if answer is None), default=None)

    def failed_at(self) -> list[float]:
        """Seconds after the start at which each unanswered probe was sent (for reports)."""
        return [round(sent - self.started, 2) for sent, answer in self._done()
                if answer is None]


@dataclass
class HolderWatch:
    """Which lab nodes have ``ip`` configured, sampled every 0.1 s from their namespaces (not
    through heartbeat); remembers the worst moment."""

    lab: Lab
    ip: str
    samples: list[tuple[str, ...]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HolderWatch:
        names = [m.name for m in self.lab.machines()]

        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append(tuple(holders(self.ip, names)))
                self._stop.wait(0.1)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    @property
    def max_holders(self) -> int:
        return max((len(s) for s in self.samples), default=0)


def wait_for(test: Callable[[], object], deadline: float, interval: float = 0.1) -> float | None:
    """Seconds until ``test()`` is truthy, or None after ``deadline`` seconds."""
    start = time.monotonic()
    while not test():
        if time.monotonic() - start > deadline:
            return None
        time.sleep(interval)
    return time.monotonic() - start


def heartbeat_whole(lab: Lab, nodes: list[str]) -> bool:
    """heartbeat runs on every node and each sees every other one active."""
    for node in nodes:
        peers = " ".join(p for p in nodes if p != node)
        script = (f"systemctl is-active -q heartbeat || exit 1; for p in {peers}; do "
                  "[ \"$(cl_status nodestatus $p 2>/dev/null)\" = active ] || exit 1; done")
        if _ssh(lab, node, script).returncode != 0:
            return False
    return True


def _ssh(lab: Lab, node: str, command: str, timeout: float = 30
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.ssh_command(node, command), capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Cycle:
    """One fault and its repair, as the probe saw it (seconds)."""

    fault: str  # "cut" or "kill -9"
    node: str
    failover: float | None  # first answer from another node after the fault
    unanswered_fault: float  # unanswered between the fault and the repair
    unanswered_repair: float  # unanswered from the repair until the cluster was whole again
    whole_after: float | None  # heartbeat on every node, peers active, after the repair
    holders_after: list[str] = field(default_factory=list)
    at: float = 0.0  # when the fault began (time.time(): the nodes' journals use that clock)


def cut_cycle(lab: Lab, ip: str, nodes: list[str], holder: str, cut_for: float,
              settle: float, whole_deadline: float = 90) -> Cycle:
    """Cut ``holder``'s link for ``cut_for`` s, heal it, and watch for ``settle`` s more after
    the cluster is whole again (a late move would still count)."""
    with HttpProbe(ip, overlap=True) as probe:
        time.sleep(0.3)  # a few answers before the fault
        cut_wall, cut_at = time.time(), time.monotonic()
        lab.cut(holder)
        try:
            wait_for(lambda: probe.first_answer_after(cut_at, holder) is not None, cut_for,
                     interval=0.05)
            time.sleep(max(0.0, cut_for - (time.monotonic() - cut_at)))
        finally:
            heal_at = time.monotonic()
            lab.heal(holder)
        whole = wait_for(lambda: heartbeat_whole(lab, nodes), whole_deadline, interval=0.3)
        quiet_end = time.monotonic() + settle
        while time.monotonic() < quiet_end:  # keep probing: a late move still counts
            time.sleep(0.1)
        end = time.monotonic()
    return Cycle("cut", holder, probe.first_answer_after(cut_at, holder),
                 probe.unanswered(cut_at, heal_at), probe.unanswered(heal_at, end), whole,
                 holders(ip, nodes), cut_wall)


def kill_cycle(lab: Lab, ip: str, nodes: list[str], node: str, settle: float,
               whole_deadline: float = 90) -> Cycle:
    """``kill -9`` heartbeat's main process on ``node``; time until every node is whole."""
    with HttpProbe(ip, overlap=True) as probe:
        time.sleep(0.3)
        wall, at = time.time(), time.monotonic()
        result = _ssh(lab, node, "kill -9 $(systemctl show -p MainPID --value heartbeat)")
        if result.returncode != 0:
            raise LabError(f"{node}: kill -9 of heartbeat failed: {result.stderr.strip()}")
        whole = wait_for(lambda: heartbeat_whole(lab, nodes), whole_deadline, interval=0.3)
        time.sleep(settle)
        end = time.monotonic()
    return Cycle("kill -9", node, None, 0.0, probe.unanswered(at, end), whole,
                 holders(ip, nodes), wall)


def holders(ip: str, nodes: list[str]) -> list[str]:
    """The nodes that have ``ip`` configured, read from their namespaces."""
    return [n for n in nodes if ip in addresses(node_ns(n))]


def median_max(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {max(values):.2f}"
