"""The validated cluster: what every later step (render, plan, deploy) works from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .secret import Secret

DEBIAN_IPFAIL = "/usr/libexec/heartbeat/ipfail"


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
    keepalive: Duration = Duration(2000)
    warntime: Duration = Duration(10000)
    deadtime: Duration = Duration(30000)
    initdead: Duration = Duration(120000)


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
    source: Path | None = None

    def node(self, name: str) -> Node:
        """The node called ``name``; KeyError when there is none."""
        for node in self.nodes:
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
