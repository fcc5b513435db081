"""What a node's firewall must let in, independent of the tool that enforces it."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Cluster, Node


@dataclass(frozen=True)
class Allow:
    """One kind of incoming IPv4 traffic to accept; None means "any"."""

    source: str | None = None
    dest: str | None = None
    proto: str | None = None  # "tcp" or "udp"
    ports: tuple[int, int] | None = None  # an inclusive range; (694, 694) for one port


def allows(cluster: Cluster, node: Node) -> list[Allow]:
    """Heartbeat's UDP port from each peer (and to the mcast group), then the floating IPs:
    all traffic to them, or only the ports listed under ``firewall: ports``."""
    port = (cluster.udpport, cluster.udpport)
    wanted = [Allow(source=peer.ip, proto="udp", ports=port)
              for peer in cluster.nodes if peer.name != node.name]
    if cluster.media.mode == "mcast":
        wanted.append(Allow(dest=cluster.media.mcast_group, proto="udp", ports=port))
    for ip in cluster.floating_ips():
        if not cluster.firewall.ports:
            wanted.append(Allow(dest=ip))
        for spec in cluster.firewall.ports:
            rng, _, proto = spec.partition("/")
            low, _, high = rng.partition("-")
            wanted.append(Allow(dest=ip, proto=proto, ports=(int(low), int(high or low))))
    return wanted
