"""Failover drill: take the node holding a group away, time until its floating IP answers
from another node, bring the node back, time the return."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .announce import announce_holders
from .converge import converge
from .errors import HbdeployError
from .handover import HandoverError, move_deadline, wait_placement
from .model import Cluster
from .probe import Prober
from .status import snapshot
from .targets import Target

PROBE_INTERVAL = 0.1  # seconds between pings of the floating IPs (they overlap)


class DrillError(HbdeployError):
    """The drill could not run or the cluster did not fail over in time."""


@dataclass
class DrillResult:
    group: str
    holder: str
    spare: str
    failover: float
    unanswered: float
    restored: float | None


def run_drill(cluster: Cluster, targets: list[Target], group: str | None = None,
              break_node: Callable[[Target], None] | None = None,
              restore_node: Callable[[Target], None] | None = None,
              out: Callable[[str], None] = print) -> DrillResult:
    """Stop heartbeat on (or ``break_node``) the holder of ``group``; time the failover."""
    groups = [g for g in cluster.groups if g.floating_ips()]
    chosen = next((g for g in groups if group in (None, g.node)), None)
    if chosen is None:
        raise DrillError(f"no resource group with a floating IP prefers {group!r}")
    before = snapshot(cluster, targets).groups
    holders = before.get(chosen.node, [])
    if len(holders) != 1:
        raise DrillError(f"group {chosen.node} is held by {holders or 'no node'}; the drill "
                         "needs a healthy cluster (hbdeploy status)")
    holder = next(t for t in targets if t.node.name == holders[0])
    ips = list(chosen.floating_ips())
    deadline = move_deadline(cluster)
    with Prober(ips, interval=PROBE_INTERVAL) as prober:
        start = time.monotonic()
        out(f"[{holder.host}] drill: taking {holder.node.name} away "
            f"({'stop heartbeat' if break_node is None else 'cut its link'})")
        if break_node is None:
            holder.remote.run("systemctl stop heartbeat.service", timeout=600)
        else:
            break_node(holder)
        others = [t for t in targets if t is not holder]  # the holder may be unreachable
        try:
            status = wait_placement(cluster, others, lambda g: len(g[chosen.node]) == 1,
                                    deadline, f"group {chosen.node} moving off "
                                    f"{holder.node.name}")
            spare = status.groups[chosen.node][0]
            while any(o.end is None for o in prober.outages):
                if time.monotonic() - start > deadline:
                    raise DrillError(f"{ips} did not answer again within {deadline:.0f}s")
                time.sleep(0.05)
            ends = [o.end for o in prober.outages if o.end is not None]
            failover = (max(ends) - start) if ends else 0.0
            unanswered = max(prober.unanswered(ip) for ip in ips)
            out(f"group {chosen.node} answered from {spare} {failover:.1f}s after "
                f"{holder.node.name} went away; unanswered for {unanswered:.1f}s (ping from "
                f"here every {PROBE_INTERVAL}s: to within {PROBE_INTERVAL}s)")
        finally:
            out(f"[{holder.host}] drill: bringing {holder.node.name} back")
            if restore_node is None:
                holder.remote.run("systemctl start heartbeat.service", timeout=600)
            else:
                restore_node(holder)
        restored = None
        if cluster.auto_failback == "on" and chosen.node == holder.node.name:
            back = time.monotonic()
            how = "auto_failback on"
            try:
                wait_placement(cluster, targets, lambda g: g[chosen.node] == [holder.node.name],
                               home_deadline(cluster),
                               f"group {chosen.node} back on {holder.node.name}")
            except HandoverError as exc:
                how = _bring_home(cluster, targets, exc, out)
            restored = time.monotonic() - back
            out(f"group {chosen.node} back on {holder.node.name} {restored:.1f}s after it "
                f"returned ({how})")
    # The node that kept the group may never have announced it again (announce.py).
    now = snapshot(cluster, targets).groups.get(chosen.node, [])
    announce_holders(targets, dict.fromkeys(ips, now),
                     lambda target, line: out(f"[{target.host}] drill: {line}"))
    return DrillResult(chosen.node, holder.node.name, spare, failover, unanswered, restored)


def home_deadline(cluster: Cluster) -> float:
    """How long heartbeat is given to bring a group home by itself after its node is back
    (20-45 s in the lab after a healed cut: both sides first release it): a new start's
    initdead on top of a move's deadline."""
    return move_deadline(cluster) + cluster.timings.initdead.ms / 1000


def _bring_home(cluster: Cluster, targets: list[Target], late: HandoverError,
                out: Callable[[str], None]) -> str:
    """heartbeat did not bring the group home by itself (CI: the returning node's
    failback request reached the holder while it still saw it "up", and the holder ignored
    every standby request after it for an hour): converge, as a deploy with nothing to
    change does, acting with heartbeat's own tools; DrillError if that does not either."""
    out(f"{late}: heartbeat did not bring it back by itself; converging (what a deploy with "
        "nothing to change does)")
    outcome = converge(cluster, targets, lambda t, line: out(f"[{t.host}] drill: {line}"))
    if outcome.problems:
        raise DrillError("the cluster did not converge after the drill: "
                         + "; ".join(outcome.problems))
    return "after hbdeploy's repair: " + ("; ".join(outcome.actions) or "none needed by then")
