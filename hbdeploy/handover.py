"""Moving resource groups with heartbeat's own tools: standby and takeover, timed."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import journal, layout
from .errors import HbdeployError
from .model import Cluster
from .probe import Prober
from .standby_wedge import RELEASE, wedges
from .status import ClusterStatus, snapshot
from .targets import Target

HB_STANDBY, HB_TAKEOVER = layout.HB_STANDBY, layout.HB_TAKEOVER


class HandoverError(HbdeployError):
    """A move of resources did not complete in time."""


class StartFault(HandoverError):
    """The new holder's journal says the groups cannot start there: asking again cannot
    help."""


Fault = Callable[[], list[str]]  # journal lines that say the move cannot succeed
FAULT_EVERY = 2.0  # seconds between two looks at the journals for a Fault


def _start_fault(what: str, lines: list[str]) -> StartFault:
    return StartFault(f"{what}: the groups cannot start there: " + "; ".join(lines))


def holders_text(groups: dict[str, list[str]]) -> str:
    """"g1=n1, g2=none": who holds each group, for messages."""
    return ", ".join(f"{g}={'+'.join(h) or 'none'}" for g, h in groups.items())


def holds_alone(held: dict[str, list[str]], node: str, groups: list[str]) -> bool:
    """Is ``node`` the one holder of each of ``groups`` in ``held`` (group -> holders)?"""
    return all(held.get(g) == [node] for g in groups)


def wait_placement(cluster: Cluster, targets: list[Target],
                   wanted: Callable[[dict[str, list[str]]], bool], deadline: float,
                   what: str, fault: Fault | None = None) -> ClusterStatus:
    """Poll the cluster until ``wanted(groups -> holders)`` is true; HandoverError past
    ``deadline``, or at once when ``fault`` (asked every FAULT_EVERY s) returns lines."""
    end = time.monotonic() + deadline
    fault_next = time.monotonic() + FAULT_EVERY
    while True:
        status = snapshot(cluster, targets)
        if wanted(status.groups):
            return status
        if fault and time.monotonic() >= fault_next:
            fault_next = time.monotonic() + FAULT_EVERY
            lines = fault()
            if lines:
                raise _start_fault(what, lines)
        if time.monotonic() > end:
            raise HandoverError(f"{what}: not within {deadline:.0f}s; holders now: "
                                + holders_text(status.groups))
        time.sleep(0.3)


def move_deadline(cluster: Cluster) -> float:
    return 2 * cluster.timings.deadtime.ms / 1000 + 30


QUIET_FOR = 3  # seconds without a line from heartbeat or ipfail in the journal

# What heartbeat's master logs on the node taking a standby's groups once its takegroup has
# ended, whatever became of the resources ("Standby resource acquisition done [all]."): a
# resource that fails logs its failure before that (converge.FAULTS).
ACQUIRED = "Standby resource acquisition done"


def window(cluster: Cluster) -> float:
    """2 x deadtime + 5 s: how long heartbeat gets to quieten down, to act on a standby
    request before it is asked again, or to finish moving a group."""
    return 2 * cluster.timings.deadtime.ms / 1000 + 5


_QUIET = (f"{journal.recent(QUIET_FOR)} | grep -v -e 'Late heartbeat' -e '^-- ' | grep -q . "
          "&& exit 1 || exit 0")


def await_quiet(cluster: Cluster, targets: list[Target]) -> bool:
    """Wait (at most 2 x deadtime + 5 s) until heartbeat and ipfail have logged nothing for
    QUIET_FOR seconds on every target; False when they never were. After a node's
    (re)start, ipfail runs a standby exchange of its own for a few seconds, and heartbeat
    ignored a standby asked meanwhile ("Standby in progress- new request ignored": CI)."""
    end = time.monotonic() + window(cluster)
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        while True:
            codes = list(pool.map(
                lambda t: t.remote.run(_QUIET, check=False, idempotent=True)[0], targets))
            if all(code == 0 for code in codes):
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.5)


def end_wedges(cluster: Cluster, targets: list[Target], note: Callable[[str], None]) -> bool:
    """End each standby exchange a node waits on that its peer dropped (standby_wedge):
    two 'done' messages from a peer, as converge does. True when one was ended."""
    found = wedges(cluster, snapshot(cluster, targets).nodes)
    by_node = {t.node.name: t for t in targets}
    for wedge in found:
        note(wedge.repair_text())
        by_node[wedge.sender].remote.run(RELEASE, check=False, timeout=30)
    return bool(found)


def settle_exchanges(cluster: Cluster, targets: list[Target], note: Callable[[str], None],
                     before: str) -> None:
    """Before a standby request or a restart (``before`` names it, for messages): wait
    until heartbeat is quiet (:func:`await_quiet`) and no node waits on a dropped standby
    exchange (ended with :func:`end_wedges`, then quiet awaited again: the stuck node runs
    the failback it delayed at once). A stuck node ignores every standby request, and a
    node restarted with an exchange of its own under way leaves its peer stuck for an
    hour (CI: ipfail's delayed giveup, sent by a node in its shutdown)."""
    quiet = await_quiet(cluster, targets)
    if end_wedges(cluster, targets, note):
        quiet = await_quiet(cluster, targets)
    if not quiet:
        note(f"heartbeat's journal was not quiet for {QUIET_FOR}s within "
             f"{window(cluster):.0f}s; {before} anyway")


def hand_over(cluster: Cluster, targets: list[Target], target: Target, groups: list[str],
              note: Callable[[str], None], fault: Fault | None = None) -> None:
    """``hb_standby`` on ``target`` until each of ``groups`` is held by one other node.

    Asked once heartbeat has settled its own exchanges (:func:`settle_exchanges`), and
    asked again, the same way, once when the first request moved nothing within
    2 x deadtime + 5 s (heartbeat drops a request it gets no answer to: "No reply to
    standby request. Standby request cancelled"). Raises
    HandoverError past move_deadline, or as soon as ``fault`` finds lines (a peer whose
    new files cannot start the groups gives them back, and asking again cannot help).
    A group counts as moved once its new holder has finished starting it
    (:func:`await_started`), not when its floating IP appears there."""
    node = target.node.name
    settle_exchanges(cluster, targets, note, "asking for the standby")

    def moved(held: dict[str, list[str]]) -> bool:
        return all(len(held[g]) == 1 and node not in held[g] for g in groups)

    what = f"{node} handing over {', '.join(groups)}"
    first = window(cluster)
    start = time.monotonic()
    target.remote.run(HB_STANDBY, timeout=120)
    try:
        placed = wait_placement(cluster, targets, moved, first, what, fault)
        await_started(cluster, targets, placed, groups, moved, what, note, fault, start)
        return
    except StartFault:
        raise
    except HandoverError:
        if not holds_alone(snapshot(cluster, targets).groups, node, groups):
            # something moved (or failed to start): no second request, wait it out
            placed = wait_placement(
                cluster, targets, moved,
                max(1.0, move_deadline(cluster) - (time.monotonic() - start)), what, fault)
            await_started(cluster, targets, placed, groups, moved, what, note, fault, start)
            return
    note(f"heartbeat did not act on the standby request in {first:.0f}s (the groups stayed "
         f"on {node}); asking again (hb_standby)")
    settle_exchanges(cluster, targets, note, "asking again")
    target.remote.run(HB_STANDBY, timeout=120)
    placed = wait_placement(cluster, targets, moved,
                            max(first, move_deadline(cluster) - (time.monotonic() - start)),
                            what, fault)
    await_started(cluster, targets, placed, groups, moved, what, note, fault, start)


def acquired(holders: list[Target], seconds: float) -> bool:
    """Has each of ``holders`` logged the end of a standby acquisition (ACQUIRED) within
    the last ``seconds`` (and one more)?"""
    command = f"{journal.recent(int(seconds) + 1)} | grep -q {shlex.quote(ACQUIRED)}"
    return all(t.remote.run(command, check=False, timeout=30, idempotent=True)[0] == 0
               for t in holders)


def await_started(cluster: Cluster, targets: list[Target], status: ClusterStatus,
                  groups: list[str], moved: Callable[[dict[str, list[str]]], bool], what: str,
                  note: Callable[[str], None], fault: Fault | None = None,
                  asked: float | None = None) -> None:
    """Once the groups' floating IPs are on their new holder (``status``): wait (at most
    2 x deadtime + 5 s) until that holder reports its resources out of transition and,
    when the standby was asked at ``asked`` (time.monotonic()), has logged the end of its
    acquisition (ACQUIRED); then ask ``fault`` once more. A group's IP comes up before the
    rest of the group has started: a resource that then fails makes the holder give the
    whole group back, and a handover judged by the IP alone was reported complete just
    before that (CI: the old holder was then restarted, took the group back with the new
    files and failed there too). Neither the IP nor rscstatus says that the group's later
    resources have been started; heartbeat logs ACQUIRED only once the whole takegroup has
    ended, after any failure's lines."""
    end = time.monotonic() + window(cluster)
    by_node = {t.node.name: t for t in targets}
    done = False
    while True:
        holders = {h for g in groups for h in status.groups.get(g, [])}
        views = [v for v in status.nodes if v.node in holders]
        started = all(v.heartbeat and v.resources not in ("", "transition", "unknown")
                      for v in views)
        if not moved(status.groups) or time.monotonic() > end:
            break
        if started and (asked is None or acquired(
                [by_node[h] for h in sorted(holders) if h in by_node],
                time.monotonic() - asked)):
            done = True
            break
        time.sleep(0.3)
        status = snapshot(cluster, targets)
    lines = fault() if fault else []
    if lines:
        raise _start_fault(what, lines)
    if not moved(status.groups):
        raise HandoverError(f"{what}: the groups left their new holder again; holders now: "
                            + holders_text(status.groups))
    if not done:
        note(f"{', '.join(sorted(holders))} still reports its resources in transition, or "
             f"has not logged the end of its acquisition, after {window(cluster):.0f}s; "
             "going on, its journal blames nothing")


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
        hand_over(cluster, targets, target, moving, lambda line: out(f"[{node}] {line}"))
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

