"""The validated cluster: what every later step (render, plan, deploy) works from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .secret import Secret


@dataclass(frozen=True)
class Duration:
    """A heartbeat time value, kept in milliseconds."""

    ms: int

    def render(self) -> str:
        """Heartbeat time syntax: whole seconds bare, anything finer with ``ms``."""
        return str(self.ms // 1000) if self.ms % 1000 == 0 else f"{self.ms}ms"

    def __str__(self) -> str:
        return f"{self.ms // 1000}s" if self.ms % 1000 == 0 else f"{self.ms}ms"


@dataclass(frozen=True)
class Node:
    """One cluster member, named as ``uname -n`` prints it."""

    name: str
    ip: str
    interface: str
    install: bool = True  # False: the operator provides heartbeat; pre-flight checks it


@dataclass(frozen=True)
class ResourceGroup:
    """Resources started left to right on the preferred node."""

    node: str
    resources: tuple[str, ...]

    def interfaces(self) -> tuple[str, ...]:
        """The interfaces its IPaddr / IPaddr2 resources name (``IPaddr::ip/24/eth1``)."""
        names = []
        for resource in self.resources:
            agent, _, args = resource.partition("::")
            parts = args.split("::")[0].split("/")
            if agent in ("IPaddr", "IPaddr2") and len(parts) > 2 and parts[2]:
                names.append(parts[2].split(":")[0])  # eth0:1 is an alias of eth0
        return tuple(names)

    def floating_ips(self) -> tuple[str, ...]:
        """The IPv4 addresses this group brings up (IPaddr / IPaddr2 resources)."""
        ips = []
        for resource in self.resources:
            agent, _, args = resource.partition("::")
            if agent in ("IPaddr", "IPaddr2") and args:
                ips.append(args.split("::")[0].split("/")[0])
        return tuple(ips)


@dataclass(frozen=True)
class Media:
    """How heartbeat packets travel: ucast (default), mcast or bcast."""

    mode: str = "ucast"
    mcast_group: str = "225.0.0.1"
    mcast_ttl: int = 1
    mcast_loop: int = 0


@dataclass(frozen=True)
class Timings:
    """heartbeat's four timings; the defaults are what a silent cluster file gets."""

    keepalive: Duration = Duration(1000)
    warntime: Duration = Duration(3000)
    deadtime: Duration = Duration(5000)
    initdead: Duration = Duration(60000)


def fill_timings(given: Mapping[str, Duration]) -> Timings:
    """Timings where those the cluster file left out follow from those it set.

    Alone, the defaults above: deadtime 5 s (a failover in about 5 s, measured with the
    guard: docs/operations.md), keepalive 1 s, warntime 3 s, initdead 60 s. Set deadtime
    and the rest scale with it (keepalive a fifth of it, at most 1 s; warntime 60 %;
    initdead twice it, at least 60 s); set keepalive or warntime alone and deadtime grows to
    stay above them, so a file that was valid with heartbeat's old defaults stays valid."""
    ms = {key: duration.ms for key, duration in given.items()}
    if "deadtime" not in ms:
        floor = max(5 * ms.get("keepalive", 0), ms.get("warntime", 0) * 5 / 3)
        ms["deadtime"] = max(5000, -(-int(floor) // 1000) * 1000)
    dead = ms["deadtime"]
    ms.setdefault("keepalive", max(1, min(1000, dead // 5)))
    if "warntime" not in ms:
        warn = dead * 3 // 5
        ms["warntime"] = warn if warn > ms["keepalive"] else (ms["keepalive"] + dead) // 2
    ms.setdefault("initdead", max(60000, 2 * dead))
    return Timings(**{key: Duration(value) for key, value in ms.items()})


@dataclass(frozen=True)
class Firewall:
    """Firewall wishes: disabled, or open to the floating IPs (all ports, or the listed ones)."""

    enabled: bool = True
    ports: tuple[str, ...] = ()  # "80/tcp" ...; empty: all traffic to the floating IPs


@dataclass(frozen=True)
class Cluster:
    """A whole validated heartbeat cluster."""

    nodes: tuple[Node, ...]
    groups: tuple[ResourceGroup, ...]
    password: Secret = field(repr=False)
    auth_method: str = "sha1"
    auth_index: int = 1  # authkeys' key number ("auth N"): every node must use the same
    timings: Timings = Timings()
    media: Media = Media()
    udpport: int = 694
    auto_failback: str = "on"
    ping: tuple[str, ...] = ()
    ping_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    logfacility: str = "local0"
    logfile: str | None = None
    debugfile: str | None = None
    firewall: Firewall = Firewall()
    allow_weak_password: bool = False  # deploy despite secret.weakness()
    nonlocal_bind: bool = False  # net.ipv4.ip_nonlocal_bind=1 on every node (sysctl.py)
    spares: tuple[Node, ...] = ()  # prepared, not members: `replace` swaps one in (spares.py)
    source: Path | None = None

    def node(self, name: str) -> Node:
        """The node called ``name``; KeyError when there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def spare(self, name: str) -> Node:
        """The spare called ``name``; KeyError when there is none."""
        for node in self.spares:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def uses_ipfail(self) -> bool:
        return bool(self.ping or self.ping_groups)

    def floating_ips(self) -> tuple[str, ...]:
        return tuple(ip for group in self.groups for ip in group.floating_ips())

    def resource_scripts(self) -> tuple[str, ...]:
        """The resource scripts haresources starts (``IPaddr::…`` is ``IPaddr``)."""
        return tuple(sorted({resource.partition("::")[0] for group in self.groups
                             for resource in group.resources}))
