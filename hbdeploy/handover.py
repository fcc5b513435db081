"""Moving resource groups with heartbeat's own tools: standby and takeover, timed."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import HbdeployError
from .model import Cluster
from .probe import Prober
from .status import ClusterStatus, snapshot
from .targets import Target

HB_STANDBY = "/usr/share/heartbeat/hb_standby"
HB_TAKEOVER = "/usr/share/heartbeat/hb_takeover"


class HandoverError(HbdeployError):
    """A move of resources did not complete in time."""


def wait_placement(cluster: Cluster, targets: list[Target],
                   wanted: Callable[[dict[str, list[str]]], bool], deadline: float,
                   what: str) -> ClusterStatus:
    """Poll the cluster until ``wanted(groups -> holders)`` is true."""
    end = time.monotonic() + deadline
    while True:
        status = snapshot(cluster, targets)
        if wanted(status.groups):
            return status
        if time.monotonic() > end:
            raise HandoverError(f"{what}: not within {deadline:.0f}s; holders now: "
                                + ", ".join(f"{g}={'+'.join(h) or 'none'}"
                                            for g, h in status.groups.items()))
        time.sleep(0.3)


def move_deadline(cluster: Cluster) -> float:
    return 2 * cluster.timings.deadtime.ms / 1000 + 30


def two_nodes_only(cluster: Cluster, what: str) -> None:
    """Heartbeat's haresources manager hands resources over between two nodes only."""
    if len(cluster.nodes) > 2:
        raise HandoverError(
            f"{what} is refused on a cluster of {len(cluster.nodes)} nodes: heartbeat's "
            "haresources resource manager moves resources between two nodes only (with three, "
            "hb_takeover left the group on two nodes at once in the lab: split brain). "
            "Stop heartbeat on the holder instead, or use a two-node cluster")


def standby(cluster: Cluster, targets: list[Target], node: str,
            out: Callable[[str], None] = print) -> float:
    """Hand every group ``node`` holds to its peer; returns the seconds it took."""
    two_nodes_only(cluster, "standby")
    target = _target(targets, node)
    before = snapshot(cluster, targets).groups
    moving = [g for g, holders in before.items() if node in holders]
    if not moving:
        out(f"[{node}] holds no resource group: nothing to hand over")
        return 0.0
    ips = [ip for g in cluster.groups if g.node in moving for ip in g.floating_ips()]
    start = time.monotonic()
    with Prober(ips) as prober:
        out(f"[{node}] hb_standby: handing over {', '.join(moving)}")
        target.remote.run(HB_STANDBY, timeout=120)
        wait_placement(cluster, targets, lambda groups: all(
            len(groups[g]) == 1 and node not in groups[g] for g in moving),
            move_deadline(cluster), f"{node} handing over {', '.join(moving)}")
    took = time.monotonic() - start
    out(f"[{node}] standby complete in {took:.1f}s; {prober.summary()}")
    return took


def takeover(cluster: Cluster, targets: list[Target], node: str,
             out: Callable[[str], None] = print) -> float:
    """Make ``node`` take every group; returns the seconds it took."""
    two_nodes_only(cluster, "takeover")
    target = _target(targets, node)
    ips = list(cluster.floating_ips())
    start = time.monotonic()
    with Prober(ips) as prober:
        out(f"[{node}] hb_takeover: taking every resource group")
        target.remote.run(f"{HB_TAKEOVER} all", timeout=120)
        wait_placement(cluster, targets, lambda groups: all(
            h == [node] for h in groups.values()), move_deadline(cluster),
            f"{node} taking over")
    took = time.monotonic() - start
    out(f"[{node}] takeover complete in {took:.1f}s; {prober.summary()}")
    return took


def _target(targets: list[Target], node: str) -> Target:
    for target in targets:
        if target.node.name == node:
            return target
    raise HandoverError(f"{node!r} is not among the targets "
                        f"({', '.join(t.node.name for t in targets)})")

