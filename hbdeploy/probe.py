"""A prober: pings floating IPs from this machine in the background and times every outage
(to within its interval: pings overlap, each dated by when it was sent)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .errors import HbdeployError


@dataclass
class Outage:
    ip: str
    start: float
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end or time.monotonic()) - self.start


@dataclass
class Prober:
    """Ping each IP every ``interval`` seconds until stopped; collects the outages."""

    ips: list[str]
    interval: float = 0.2
    outages: list[Outage] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Prober:
        if not shutil.which("ping"):
            raise HbdeployError("timing a move needs ping on this machine: "
                                "apt-get install iputils-ping")
        for ip in self.ips:
            thread = threading.Thread(target=self._loop, args=(ip,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(self, ip: str) -> None:
        """A ping leaves every ``interval`` whether or not the previous one has answered
        (each waits up to 1 s), and each counts at the moment it was sent: an outage's
        start and end are known to within ``interval``, not the second a lost ping waits."""
        current: Outage | None = None
        pending: list[tuple[float, subprocess.Popen[bytes]]] = []
        while not self._stop.is_set() or pending:
            if not self._stop.is_set():
                pending.append((time.monotonic(), subprocess.Popen(
                    ["ping", "-n", "-q", "-c", "1", "-W", "1", ip],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            while pending and pending[0][1].poll() is not None:  # in the order sent
                sent, proc = pending.pop(0)
                ok = proc.returncode == 0
                if not ok and current is None:
                    current = Outage(ip, sent)
                    self.outages.append(current)
                elif ok and current is not None:
                    current.end = sent
                    current = None
            if self._stop.is_set():
                for _, proc in pending:
                    proc.kill()
                    proc.wait()
                return
            self._stop.wait(self.interval)

    def unanswered(self, ip: str) -> float:
        """Seconds ``ip`` went unanswered in all (an outage still open counts until now)."""
        return sum(o.seconds for o in self.outages if o.ip == ip)

    def summary(self) -> str:
        return ", ".join(f"{ip} unanswered {self.unanswered(ip):.1f}s" for ip in self.ips)
