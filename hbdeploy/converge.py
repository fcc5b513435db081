"""Converge: bring a cluster to its desired state within a bounded time, acting with
heartbeat's own tools and saying what it did (the last step of every deploy).

Desired: heartbeat runs on every node and each sees every other one active; each floating
IP is held by exactly one node (with auto_failback on: by its group's preferred node) and
answers a ping from a peer. heartbeat often repairs a state itself, so each repair waits
for a patience of its own before it acts:

- heartbeat not running on a node (and not held stopped by hbdeploy-guard, which restarts
  it when the node's network is back): ``systemctl start heartbeat``;
- a group held by no node while every node is active: ``hb_takeover local`` on its
  preferred node (``hb_takeover foreign`` on another when that one is not in the run), then
  ``ResourceManager takegroup`` there (heartbeat may believe the group is still held);
- a group held by two nodes that hear each other: ``ResourceManager givegroup`` on every
  holder but one (the preferred node, when it holds the group): heartbeat's own resource
  scripts release the extra copy, whatever heartbeat believes it holds;
- auto_failback on and a group away from its active preferred node: ``hb_takeover local``
  on the preferred node (after 2 x deadtime; 6 x while a node reports its resources in
  transition, as heartbeat's own failback may be under way);
- a node with a peer missing from its node list (a heartbeat that restarts takes its node
  list from one peer, and drops what that peer does not list): ``hb_addnode`` there;
- a node stuck in a standby exchange its peer dropped (it ignores every standby and
  failback for an hour): two standby "done" messages from a peer (standby_wedge.py).

After a node left the cluster (decommission, a bootstrap rolled back), :func:`repair_claims`
restarts heartbeat where it believes it holds groups it does not (phantom claims).

Then each holder announces its floating IPs (gratuitous ARP, announce.py) and a peer
pings each one. Whether a failure is the new configuration's fault (rollback) or not is
decided from heartbeat's own journal: see :func:`config_fault`.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import journal, layout
from .announce import announce_holders
from .handover import HB_TAKEOVER
from .model import Cluster
from .standby_wedge import RELEASE, wedges
from .status import (
    ClusterStatus,
    NodeView,
    assess,
    phantom_text,
    phantoms,
    snapshot,
    stranger_text,
)
from .targets import Target

Say = Callable[[Target, str], None]

# Lines heartbeat or its ResourceManager log when a configuration cannot work.
FAULTS = re.compile(r"Giving up resources due to failure of|Return code [1-9][0-9]* from|"
                    r"Configuration error|"
                    r"Illegal directive|Bad permissions on keyfile|Authentication file|"
                    r"cannot open authentication file|Unknown node|ERROR: .* failed \(rc=")
SETTLE_POLL = 0.5
RESOURCE_MANAGER = layout.RESOURCE_MANAGER


@dataclass
class Issue:
    """One way the cluster differs from its desired state, and the repair, if any."""

    key: str
    text: str
    patience: float = 0.0
    repair: Callable[[], None] | None = None
    repair_text: str = ""
    actor: Target | None = None  # the node the repair runs on


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    holders: dict[str, list[str]] = field(default_factory=dict)  # floating IP -> nodes
    blame: dict[str, list[str]] = field(default_factory=dict)  # node -> journal lines


def deadline(cluster: Cluster) -> float:
    """How long converge may take: a fresh start's initdead, heartbeat's own restart after
    a split brain (deadtime + 1 s, then a new start) and each repair's patience."""
    t = cluster.timings
    return (t.initdead.ms + 6 * t.deadtime.ms) / 1000 + 30


def issues(cluster: Cluster, targets: list[Target], status: ClusterStatus) -> list[Issue]:
    """Every difference from the desired state, each with its repair where there is one."""
    deadtime = cluster.timings.deadtime.ms / 1000
    # heartbeat's own first acquisition after a start may wait for initdead
    orphan_patience = max(2 * deadtime, cluster.timings.initdead.ms / 1000)
    by_node = {t.node.name: t for t in targets}
    views = {v.node: v for v in status.nodes}
    found: list[Issue] = []
    for view in status.nodes:
        target = by_node[view.node]
        if not view.reachable:
            found.append(Issue(f"unreachable {view.node}", f"{view.node} is unreachable: "
                               f"{view.error}"))
        elif view.guard_stopped:
            found.append(Issue(f"isolated {view.node}", f"{view.node} is cut off from its "
                               "peers and its references: hbdeploy-guard holds heartbeat "
                               "stopped until its network answers"))
        elif not view.heartbeat and view.starting:
            found.append(Issue(f"starting {view.node}", f"heartbeat on {view.node} runs "
                               f"(systemd: {view.unit}) but does not answer cl_status: "
                               "starting, or restarting itself"))
        elif not view.heartbeat:
            found.append(Issue(
                f"down {view.node}", f"heartbeat is not running on {view.node}",
                patience=3.0, repair=_run([target], "systemctl start heartbeat.service"),
                repair_text=f"heartbeat was not running on {view.node}: started it "
                            "(systemctl start heartbeat)", actor=target))
        else:
            for peer, state in view.peers.items():
                if peer not in views or state == "active":
                    continue
                if state == "unknown" and (views[peer].heartbeat or views[peer].starting):
                    # Not in its node list at all: a heartbeat that (re)starts takes its
                    # node list from one peer and drops what that peer does not list, for
                    # good (rollout.Rollout._introduce): heartbeat's hb_addnode puts it back.
                    found.append(Issue(
                        f"forgot {view.node} {peer}", f"{view.node} has no {peer} in its "
                        "node list", patience=2 * deadtime,
                        repair=_run([target], f"{layout.HB_ADDNODE} {shlex.quote(peer)}"),
                        repair_text=f"{view.node} had dropped {peer} from its node list "
                                    f"(a restarted heartbeat takes the list of a peer "
                                    f"that lacked it): hb_addnode {peer} there",
                        actor=target))
                    continue
                found.append(Issue(f"hears {view.node} {peer}",
                                   f"{view.node} sees {peer} {state}"))
    found += _strangers(cluster, by_node, status)
    whole = not found
    if whole:
        for wedge in wedges(cluster, status.nodes):
            sender = by_node[wedge.sender]
            found.append(Issue(f"wedge {wedge.stuck}", wedge.text(), patience=2.0,
                               repair=_run([sender], RELEASE),
                               repair_text=wedge.repair_text(), actor=sender))
        found += phantom_claims(cluster, by_node, status)
    for group in cluster.groups:
        ips = group.floating_ips()
        if not ips:
            continue
        holders = status.groups.get(group.node, [])
        preferred = by_node.get(group.node)
        if not whole:
            continue  # placement is judged once every node runs and hears the others
        key = shlex.quote(group.resources[0])  # ResourceManager's name for the group
        if not holders:
            taker = preferred or targets[0]
            how = "local" if preferred else "foreign"
            found.append(Issue(
                f"orphan {group.node}", f"group {group.node} is held by no node",
                patience=orphan_patience,
                repair=_run([taker], f"{HB_TAKEOVER} {how}; {RESOURCE_MANAGER} takegroup {key}"),
                repair_text=f"group {group.node} was held by no node: hb_takeover {how} and "
                            f"ResourceManager takegroup on {taker.node.name}", actor=taker))
        elif len(holders) > 1:
            keeper = group.node if group.node in holders else holders[0]
            extra = [by_node[h] for h in holders if h != keeper]
            found.append(Issue(
                f"twice {group.node}", f"group {group.node} is held by {', '.join(holders)}",
                patience=2 * deadtime,
                repair=_run(extra, f"{RESOURCE_MANAGER} givegroup {key}"),
                repair_text=f"group {group.node} was held by {', '.join(holders)}: "
                            "ResourceManager givegroup on "
                            f"{', '.join(t.node.name for t in extra)}, {keeper} keeps it",
                actor=extra[0]))
        elif (cluster.auto_failback == "on" and preferred is not None
              and holders != [group.node]):
            # While a node reports its resources in transition, heartbeat's own failback
            # exchange may be under way: a takeover request crossing it can leave a node
            # waiting an hour on the other (standby_wedge.py). Wait longer then.
            busy = any(v.resources == "transition" for v in status.nodes)
            found.append(Issue(
                f"away {group.node}{' busy' if busy else ''}", f"group {group.node} is on "
                f"{holders[0]}, not on its preferred node (auto_failback on)"
                f"{'; a node reports its resources in transition' if busy else ''}",
                patience=(6 if busy else 2) * deadtime,
                repair=_run([preferred], f"{HB_TAKEOVER} local"),
                repair_text=f"group {group.node} stayed on {holders[0]} with auto_failback "
                            f"on: hb_takeover local on {group.node}", actor=preferred))
    return found


def _strangers(cluster: Cluster, by_node: dict[str, Target], status: ClusterStatus
               ) -> list[Issue]:
    """Nodes that running nodes list but the cluster file does not (NodeView.strangers).
    A dead one is dropped from those lists (hb_delnode): the file says it is no member,
    and while it is listed, the survivors take it for a dead member whose resources they
    mark as theirs (phantom_claims). A live one is a member still: no repair (the deploy
    refuses to run, deploy.Deployment.gather; `hbdeploy decommission` takes it out)."""
    listing: dict[str, list[NodeView]] = {}
    for view in status.nodes:
        if view.reachable and view.heartbeat:
            for peer in view.strangers:
                listing.setdefault(peer, []).append(view)
    found = []
    deadtime = cluster.timings.deadtime.ms / 1000
    for peer, views in sorted(listing.items()):
        if all(v.strangers[peer] == "dead" for v in views):
            names = [v.node for v in views]
            found.append(Issue(
                f"stranger {peer}", stranger_text(names[0], peer, "dead"),
                patience=deadtime,
                repair=_run([by_node[n] for n in names],
                            f"{layout.HB_DELNODE} {shlex.quote(peer)}"),
                repair_text=f"{', '.join(names)} still listed {peer}, which the cluster file "
                            f"does not name, as a dead cluster node: hb_delnode {peer} there",
                actor=by_node[names[0]]))
        else:
            state = next(v.strangers[peer] for v in views if v.strangers[peer] != "dead")
            found.append(Issue(f"member {peer}", stranger_text(views[0].node, peer, state)))
    return found


def phantom_claims(cluster: Cluster, by_node: dict[str, Target], status: ClusterStatus
                   ) -> list[Issue]:
    """status.phantoms, each with its repair: a restart of heartbeat there (it holds
    nothing), which starts its view of resources anew — once the node that left is out of
    every node list: a heartbeat that starts while a peer still lists it as dead marks its
    resources taken again (the lab: three restarts, "all" each time). Seen in CI, and in
    the lab without ipfail: a cut of the holder not taken over in 30 s."""
    found = []
    for view, foreign in phantoms(cluster, status.nodes, status.groups):
        target = by_node[view.node]
        found.append(Issue(
            f"phantom {view.node}", phantom_text(view, foreign),
            patience=2 * cluster.timings.deadtime.ms / 1000,
            repair=_run([target], "systemctl restart heartbeat.service"),
            repair_text=f"heartbeat on {view.node} believed it held {', '.join(foreign)}'s "
                        f"group(s) ({view.resources}, left by a node that left the cluster) "
                        "but held none, so it would not have taken them over: restarted "
                        "heartbeat there (it held nothing)", actor=target))
    return found


def repair_claims(cluster: Cluster, targets: list[Target], say: Say,
                  limit: float | None = None) -> list[str]:
    """After a node left the cluster and every running node dropped it from its node list:
    wait until no node reports its resources in transition, then restart heartbeat where a
    phantom claim (:func:`phantom_claims`) stays for 2 x deadtime (with ``ping``, ipfail
    often ends it first, with a standby exchange of its own), once per node, and converge.
    Returns what is still wrong."""
    end = time.monotonic() + (deadline(cluster) if limit is None else limit)
    patience = 2 * cluster.timings.deadtime.ms / 1000
    by_node = {t.node.name: t for t in targets}
    restarted: set[str] = set()
    since: float | None = None
    found: list[Issue] = []
    while time.monotonic() < end:
        status = snapshot(cluster, targets)
        if not all(v.heartbeat and v.resources not in ("", "transition", "unknown")
                   for v in status.nodes):
            since = None  # an exchange under way, or a node (re)starting
            time.sleep(SETTLE_POLL)
            continue
        found = phantom_claims(cluster, by_node, status)
        if not found:
            if not restarted:
                return []
            return converge(cluster, targets, say, limit=max(1.0, end - time.monotonic())
                            ).problems
        since = since or time.monotonic()
        fresh = [i for i in found if i.actor and i.actor.node.name not in restarted]
        if time.monotonic() - since < patience or not fresh:
            time.sleep(SETTLE_POLL)
            continue
        for issue in fresh[:1]:  # one node at a time
            assert issue.actor and issue.repair
            say(issue.actor, issue.repair_text)
            issue.repair()
            restarted.add(issue.actor.node.name)
        since = None
    return [i.text for i in found] or ["the nodes' resources did not settle (still in "
                                       "transition, or a node not answering)"]


def _run(targets: list[Target], command: str) -> Callable[[], None]:
    """A repair: ``command`` on each of ``targets``, one after the other.

    Its output goes nowhere: a resource that fails to start makes ResourceManager leave
    ``(sleep 30; hb_standby) &`` behind, which would hold the SSH session (and converge's
    loop) open for 30 s if it inherited the session's output."""
    detached = f"( {command} ) </dev/null >/dev/null 2>&1"

    def repair() -> None:
        for target in targets:
            target.remote.run(detached, check=False, timeout=120)
    return repair


def converge(cluster: Cluster, targets: list[Target], say: Say,
             limit: float | None = None,
             blame: Callable[[], dict[str, list[str]]] | None = None) -> Outcome:
    """Poll, repair what stays wrong past its patience, until the cluster has been right
    for a while (at once if it is right at first sight) or ``limit`` seconds pass.

    ``blame`` (a deploy that wrote files) is asked, once the trouble has lasted 2 x
    deadtime and then every 5 s, whether the new configuration is at fault: if it says so,
    waiting on longer would not help, and converge stops with its answer."""
    limit = deadline(cluster) if limit is None else limit
    deadtime = cluster.timings.deadtime.ms / 1000
    steady = deadtime  # after any trouble, the right state must hold this long
    outcome = Outcome()
    trouble_since: float | None = None
    blame_next = 0.0
    first_seen: dict[str, float] = {}
    end = time.monotonic() + limit
    right_since: float | None = None
    troubled = False
    while True:
        status = snapshot(cluster, targets)
        now = time.monotonic()
        found = issues(cluster, targets, status)
        if not found:
            right_since, trouble_since = right_since or now, None
            if not troubled or now - right_since >= steady:
                break
        else:
            troubled, right_since = True, None
            trouble_since = trouble_since or now
            if blame and now - trouble_since >= 2 * deadtime and now >= blame_next:
                blame_next = now + 5
                outcome.blame = blame()
                if outcome.blame:
                    outcome.problems = [i.text for i in found]
                    return outcome
            for key in list(first_seen):
                if key not in {i.key for i in found}:
                    del first_seen[key]
            for issue in found:
                since = first_seen.setdefault(issue.key, now)
                if issue.repair and now - since >= issue.patience:
                    say(issue.actor or targets[0], issue.repair_text)
                    issue.repair()
                    outcome.actions.append(issue.repair_text)
                    first_seen[issue.key] = now + issue.patience  # time to work first
        if now > end:
            outcome.problems = [i.text for i in found] or ["placement still changing"]
            outcome.problems = [f"{p} (after {limit:.0f}s)" for p in outcome.problems]
            return outcome
        time.sleep(SETTLE_POLL)
    outcome.holders = placement(cluster, status.nodes)
    announce_holders(targets, outcome.holders, say)
    outcome.problems = _silent_ips(outcome.holders, targets, end)
    return outcome


def right_at_first_sight(cluster: Cluster, targets: list[Target], views: list[NodeView],
                         answers: dict[str, dict[str, bool]]) -> dict[str, list[str]] | None:
    """Who holds each floating IP, when the views of the facts probe show the cluster in
    its desired state and every held IP answered a peer's ping (``answers``: node -> IP ->
    answered); None when not, and converge must poll."""
    if issues(cluster, targets, assess(cluster, views)):
        return None
    holders = placement(cluster, views)
    for ip, held in holders.items():
        others = [t.node.name for t in targets if t.node.name not in held]
        if others and not any(answers.get(name, {}).get(ip) for name in others):
            return None
    return holders


def placement(cluster: Cluster, views: list[NodeView]) -> dict[str, list[str]]:
    """Floating IP -> the nodes that have it, by their views."""
    return {ip: [v.node for v in views if ip in v.floating] for ip in cluster.floating_ips()}


def _silent_ips(holders: dict[str, list[str]], targets: list[Target], end: float) -> list[str]:
    """Each floating IP must answer ping from a node that does not hold it."""
    problems = []
    for ip, held in holders.items():
        probe = next((t for t in targets if t.node.name not in held), None)
        if probe is None:
            continue
        wait = max(2, min(10, int(end - time.monotonic())))
        code, _, _ = probe.remote.run(f"ping -n -c 1 -w {wait} {ip}", check=False, timeout=30,
                                       idempotent=True)
        if code != 0:
            problems.append(f"floating IP {ip} (on {', '.join(held)}) does not answer ping "
                            f"from {probe.node.name} within {wait}s")
    return problems


def config_fault(targets: list[Target], seconds: float) -> dict[str, list[str]]:
    """Per node, the lines of its journal from the last ``seconds`` that put the blame on
    the configuration (a resource failing to start, a file heartbeat refuses)."""
    found = {}
    pattern = shlex.quote(FAULTS.pattern)
    for target in targets:
        _, out, _ = target.remote.run(
            f"{journal.recent(int(seconds) + 5, unit=None)} | grep -E {pattern} | tail -n 5",
            check=False, timeout=30, idempotent=True)
        if out.strip():
            found[target.node.name] = out.strip().splitlines()
    return found
