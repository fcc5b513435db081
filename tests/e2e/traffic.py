"""Traffic during an operation: HTTP requests to a floating IP at a fixed rate, and a watch
on which lab nodes hold it (read from their namespaces, not through heartbeat)."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field

from hbdeploy.lab import Lab
from hbdeploy.lab.network import addresses, node_ns


@dataclass
class Traffic:
    """GET http://IP/ every ``1/rate`` seconds; each answer is a node name or None."""

    ip: str
    rate: float = 25.0
    answers: list[tuple[float, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    started: float = 0.0
    stopped: float = 0.0

    def __enter__(self) -> Traffic:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self.stopped = time.monotonic()

    def _loop(self) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(f"http://{self.ip}/", timeout=interval * 4) as r:
                    answer: str | None = r.read().decode().strip()
            except OSError:
                answer = None
            self.answers.append((time.monotonic(), answer))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    @property
    def failures(self) -> int:
        return sum(1 for _, a in self.answers if a is None)

    @property
    def achieved_rate(self) -> float:
        return len(self.answers) / max(self.stopped - self.started, 1e-9)

    def servers(self) -> set[str]:
        return {a for _, a in self.answers if a}


@dataclass
class HolderWatch:
    """Which lab nodes have ``ip`` configured, sampled every 0.1 s; remembers the worst."""

    lab: Lab
    ip: str
    samples: list[tuple[str, ...]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HolderWatch:
        names = [m.name for m in self.lab.machines()]

        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append(tuple(n for n in names if self.ip in addresses(node_ns(n))))
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
