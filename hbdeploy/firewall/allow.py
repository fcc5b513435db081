"""What a node's firewall must let in, independent of the tool that enforces it."""

from __future__ import annotations

from dataclasses import dataclass

from ..equivalence import lines
from ..model import Cluster, Node

HEARTBEAT_UDPPORT = 694  # heartbeat's own default, for an ha.cf with no udpport line


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


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def heard_now(cluster: Cluster, node: Node, hacf: str) -> list[Allow]:
    """The heartbeat traffic ``node`` takes in while it runs on ``hacf`` (the ha.cf it read
    before this run): from each peer (the cluster's, and any other its ucast lines name) to
    the udpport its ucast and bcast lines use, and to each multicast group on that group's
    own port. A media change keeps these open beside the new rules until every node has
    re-read the new ha.cf: under an INPUT policy that drops what no rule accepts, the new
    rules alone cut the nodes off from each other from the firewall's change to the re-read
    (the lab at deadtime 1 s: each declared the other dead)."""
    found = [line.split() for line in lines(hacf)]
    port = next((_port(w[1]) for w in found if w[0] == "udpport" and len(w) > 1), None)
    port = port or HEARTBEAT_UDPPORT
    peers = [p.ip for p in cluster.nodes if p.name != node.name]
    peers += [w[2] for w in found if w[0] == "ucast" and len(w) > 2
              and w[2] not in peers and w[2] != node.ip]
    heard: list[Allow] = []
    if any(w[0] in ("ucast", "bcast") for w in found):
        heard += [Allow(source=ip, proto="udp", ports=(port, port)) for ip in peers]
    for w in found:
        mport = _port(w[3]) if w[0] == "mcast" and len(w) > 3 else None
        if mport:
            heard += [Allow(source=ip, proto="udp", ports=(mport, mport)) for ip in peers]
            heard.append(Allow(dest=w[2], proto="udp", ports=(mport, mport)))
    return list(dict.fromkeys(heard))
