"""Cluster status: each node's view (heartbeat, peers, links) and who holds each group.

Exit codes for monitoring: 0 healthy, 1 degraded (a node or a link down, every group
served), 2 critical (split brain, an orphaned group, or no node reachable).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from fabric import Connection

from . import layout
from .errors import HbdeployError
from .model import Cluster
from .remote import Remote
from .standby_wedge import PROBE as WEDGE_PROBE
from .standby_wedge import wedges
from .supervision import GUARD_STOPPED
from .targets import Target, match_targets

HEALTHY, DEGRADED, CRITICAL = 0, 1, 2
LEVELS = {HEALTHY: "healthy", DEGRADED: "degraded", CRITICAL: "critical"}

# heartbeat 3.0.6 answers a new API client (every cl_status call but hbstatus) only when its
# main loop next wakes: up to half a second later, or a keepalive when that is shorter
# (measured in the lab: 2-500 ms at keepalive 1 s). So every question is asked at once and,
# while they wait, the probe wakes heartbeat's master itself: SIGCHLD, as hbdeploy-guard's
# waker does every 50 ms (harmless in the master: it reaps no child), 10 ms after asking,
# then 20, 40, ... ms later (a shell builtin: no process but the sleep). Only a process whose
# name is heartbeat is signalled; where the pid file names none (heartbeat starting or gone),
# a casual cl_status call wakes it instead (heartbeat's own tool; a casual client's sign-on
# sends nothing to the cluster; its registration wakes the loop). The answers came after
# 3-52 ms with the guard's waker alone (16-27 ms mostly), and a whole probe took 38-80 ms
# on a lab node, 38-54 ms with this (2026-12-04, 30 runs each). The waker is stopped once
# every answer is in. The links are the node's media interface, which is how heartbeat names
# them. The addresses are the caller's (``addrs``) when it has read them already.
PROBE = r"""
LC_ALL=C
if cl_status hbstatus >/dev/null 2>&1; then echo "hb up"; up=yes; else echo "hb down"; up=no
  echo "unit $(systemctl is-active heartbeat.service 2>/dev/null)"; fi
[ -e __GUARD_STOPPED__ ] && echo "guard stopped"
asked=""
for n in __PEERS__; do
  if [ $up = no ]; then echo "peer $n unknown"; continue; fi
  ( echo "peer $n $(cl_status nodestatus $n 2>/dev/null || echo unknown)" ) & asked="$asked $!"
  for l in __LINKS__; do
    ( echo "link $n $l $(cl_status hblinkstatus $n $l 2>/dev/null || echo unknown)" ) &
    asked="$asked $!"
  done
done
if [ $up = yes ]; then
  # Nodes in heartbeat's node list that the cluster file does not name (nor its ping
  # nodes): a member taken out of the file without `decommission` (NodeView.strangers).
  ( known=" "; for k in __KNOWN__; do known="$known$k "; done
    for n in $(cl_status listnodes 2>/dev/null); do
      case $known in *" $n "*) continue ;; esac
      echo "stranger $n $(cl_status nodetype "$n" 2>/dev/null || echo unknown)" \
           "$(cl_status nodestatus "$n" 2>/dev/null || echo unknown)"
    done ) & asked="$asked $!"
  # Only a node whose resources are in transition can be stuck on a standby exchange
  # (standby_wedge.wedges): its journal is read only then (the read and its awk were a
  # fifth of the probe's CPU, on every node of every run).
  ( r=$(cl_status rscstatus 2>/dev/null || echo unknown); echo "resources $r"
    if [ "$r" = transition ]; then __WEDGE__
    fi ) & asked="$asked $!"
  ( __READ_MASTER__
    for pause in 0.01 0.02 0.04 0.08 0.16 0.32; do sleep $pause
      if [ "$name" = heartbeat ]; then kill -CHLD "$hb"
      else cl_status rscstatus </dev/null >/dev/null 2>&1 & fi
    done ) </dev/null >/dev/null 2>&1 &
  waker=$!
  wait $asked
  kill $waker 2>/dev/null
fi
wait
[ -n "${addrs+set}" ] || addrs=$(ip -o -4 addr show)
while read -r _ dev _ addr _; do [ -n "$addr" ] && echo "addr ${addr%/*}"; done <<EOF_ADDRS
$addrs
EOF_ADDRS
""".replace("__GUARD_STOPPED__", GUARD_STOPPED).replace("__WEDGE__", WEDGE_PROBE).replace(
    "__READ_MASTER__", layout.READ_MASTER)


@dataclass
class NodeView:
    """What one node reports."""

    node: str
    host: str
    reachable: bool = False
    error: str = ""
    heartbeat: bool = False  # answers cl_status
    unit: str = ""  # systemd's word on heartbeat.service, asked when heartbeat does not answer
    guard_stopped: bool = False  # hbdeploy-guard holds heartbeat stopped (node cut off)
    peers: dict[str, str] = field(default_factory=dict)  # peer -> active/dead/...
    links: dict[str, str] = field(default_factory=dict)  # "peer/if" -> up/dead
    holds: list[str] = field(default_factory=list)  # groups (by preferred node)
    partial: list[str] = field(default_factory=list)  # groups held with only some IPs
    floating: list[str] = field(default_factory=list)  # the cluster's floating IPs it has
    resources: str = ""  # cl_status rscstatus: none/local/foreign/all, or transition
    standby_wait: int = 0  # seconds it has waited on a standby exchange (standby_wedge.py)
    # Nodes heartbeat lists as cluster nodes (nodetype normal) that the cluster file does
    # not name -> their state (dead, active, ...): a member taken out of the file without
    # `hbdeploy decommission` is still one to heartbeat, and once it stops, a dead node
    # whose (no) resources the others mark as theirs (converge.phantom_claims).
    strangers: dict[str, str] = field(default_factory=dict)

    @property
    def starting(self) -> bool:
        """heartbeat's unit runs but heartbeat does not answer: starting, or in one of its
        own restarts (after a split brain it sleeps deadtime + 1 s, then starts afresh)."""
        return self.unit in ("active", "activating", "reloading")


@dataclass
class ClusterStatus:
    nodes: list[NodeView]
    groups: dict[str, list[str]]  # group (preferred node) -> nodes holding it
    problems: list[str]
    code: int

    def to_json(self) -> str:
        return json.dumps({"status": LEVELS[self.code], "code": self.code,
                           "nodes": [asdict(n) for n in self.nodes], "groups": self.groups,
                           "problems": self.problems}, indent=2, sort_keys=True)

    def table(self) -> str:
        rows = [f"{'NODE':<12} {'REACHABLE':<9} {'HEARTBEAT':<9} {'PEERS':<28} "
                f"{'LINKS':<22} HOLDS"]
        for n in self.nodes:
            peers = " ".join(f"{p}={s}" for p, s in n.peers.items()) or "-"
            links = " ".join(f"{k}={v}" for k, v in n.links.items()) or "-"
            rows.append(f"{n.node:<12} {'yes' if n.reachable else 'NO':<9} "
                        f"{'running' if n.heartbeat else 'down':<9} {peers:<28} {links:<22} "
                        f"{' '.join(n.holds) or '-'}")
        rows.append(f"cluster: {LEVELS[self.code]}"
                    + ("".join(f"\n  {p}" for p in self.problems) if self.problems else ""))
        return "\n".join(rows)


def probe(cluster: Cluster, name: str, links: bool = True) -> str:
    """The shell script that reports node ``name``'s view (one remote command). Without
    ``links`` it asks nothing about the media links: one ``cl_status`` per peer less, for
    a caller that judges by the peers' states alone (a node has one media interface, so a
    link's state follows its peer's; the deploy's facts probe)."""
    peers = [n for n in cluster.node_names if n != name]
    # heartbeat lower-cases the names it lists (config.c, add_node)
    known = [name.lower() for name in (*cluster.node_names, *cluster.ping,
                                       *(g for g, _ in cluster.ping_groups))]
    return (PROBE.replace("__PEERS__", " ".join(map(shlex.quote, peers)))
            .replace("__KNOWN__", " ".join(map(shlex.quote, known)))
            .replace("__LINKS__", shlex.quote(cluster.node(name).interface) if links else ""))


def node_view(cluster: Cluster, name: str, remote: Remote) -> NodeView:
    """Node ``name``'s view, asked over ``remote``; unreachable (with the reason) on error."""
    try:
        _, out, _ = remote.run(probe(cluster, name), check=False, timeout=30,
                              idempotent=True)
    except HbdeployError as exc:
        return NodeView(name, remote.label, error=str(exc))
    return parse_view(cluster, name, remote.label, out)


def parse_view(cluster: Cluster, name: str, host: str, out: str) -> NodeView:
    """A reachable node's view from the output of :func:`probe`."""
    view = NodeView(name, host, reachable=True)
    addrs = set()
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == ["hb", "up"]:
            view.heartbeat = True
        elif parts == ["guard", "stopped"]:
            view.guard_stopped = True
        elif len(parts) == 3 and parts[0] == "peer":
            view.peers[parts[1]] = parts[2]
        elif len(parts) == 4 and parts[0] == "link":
            view.links[f"{parts[1]}/{parts[2]}"] = parts[3]
        elif len(parts) == 2 and parts[0] == "unit":
            view.unit = parts[1]
        elif len(parts) == 2 and parts[0] == "resources":
            view.resources = parts[1]
        elif len(parts) == 2 and parts[0] == "standby_wait" and parts[1].isdigit():
            view.standby_wait = int(parts[1])
        elif len(parts) == 2 and parts[0] == "addr":
            addrs.add(parts[1])
        elif len(parts) == 4 and parts[0] == "stranger" and parts[2] == "normal":
            view.strangers[parts[1]] = parts[3]
    # A node holds a group when it has any of the group's floating IPs (during a rolling
    # update that adds an IP, the running group has only the old ones); see `partial`.
    view.floating = [ip for ip in cluster.floating_ips() if ip in addrs]
    view.holds = [g.node for g in cluster.groups if set(g.floating_ips()) & addrs]
    view.partial = [g.node for g in cluster.groups
                    if set(g.floating_ips()) & addrs and not set(g.floating_ips()) <= addrs]
    return view


def phantoms(cluster: Cluster, views: Sequence[NodeView], groups: dict[str, list[str]]
             ) -> list[tuple[NodeView, list[str]]]:
    """Two members, each running: a node that holds no group but tells heartbeat it holds
    the other's ("foreign" or "all" in ``cl_status rscstatus``) while the other holds
    them, with the groups it claims. heartbeat 3.0.6 keeps a two-node view of resources
    (local and foreign); a node that leaves the cluster is a dead node to the others,
    whose resources they mark as taken (hb_resource.c, takeover_from_node), although it
    held none. Both then claim every group ("Both machines own foreign resources!"), and
    when the holder dies the other logs "Dead node ... gave up resources." and takes
    nothing (converge.phantom_claims repairs it)."""
    if len(cluster.nodes) != 2 or not all(g.floating_ips() for g in cluster.groups):
        return []
    found = []
    for view in views:
        foreign = [g.node for g in cluster.groups if g.node != view.node]
        if view.resources not in ("foreign", "all") or view.holds or not foreign:
            continue
        if all(groups.get(g) and view.node not in groups[g] for g in foreign):
            found.append((view, foreign))
    return found


def phantom_text(view: NodeView, foreign: list[str]) -> str:
    return (f"heartbeat on {view.node} believes it holds {', '.join(foreign)}'s group(s) "
            f"({view.resources}) but holds none: it would not take them over if their "
            "holder failed")


def stranger_text(node: str, peer: str, state: str) -> str:
    """What a node listing ``peer`` (not in the cluster file) means, and its fix."""
    if state == "dead":
        return (f"{node} still lists {peer} ({state}) as a cluster node, but the cluster file "
                f"does not: heartbeat takes it for a dead member; `hbdeploy deploy` takes it "
                "out of the node lists (hb_delnode)")
    return (f"{node} lists {peer} ({state}) as a cluster node, but the cluster file does "
            f"not: it is still a member; `hbdeploy decommission {peer}` takes it out (it "
            "hands its groups over and stops), or put it back in the file")


def assess(cluster: Cluster, views: list[NodeView]) -> ClusterStatus:
    """Classify the cluster from every node's view."""
    problems: list[str] = []
    code = HEALTHY
    groups = {g.node: [v.node for v in views if g.node in v.holds]
              for g in cluster.groups if g.floating_ips()}
    if not any(v.reachable for v in views):
        return ClusterStatus(views, groups, ["no node is reachable"], CRITICAL)
    for group, holders in groups.items():
        if len(holders) > 1:
            problems.append(f"split brain: group {group} is held by {', '.join(holders)}")
            code = CRITICAL
        elif not holders and all(v.reachable for v in views):
            problems.append(f"orphaned: group {group} is held by no node")
            code = CRITICAL
        elif not holders:
            problems.append(f"group {group} is held by no reachable node")
            code = CRITICAL
    for v in views:
        if not v.reachable:
            problems.append(f"{v.node} is unreachable: {v.error}")
        elif v.guard_stopped:
            problems.append(f"{v.node}: cut off from its peers and references; "
                            "hbdeploy-guard holds heartbeat stopped and starts it when the "
                            "network answers (journalctl -u hbdeploy-guard)")
        elif not v.heartbeat and v.starting:
            problems.append(f"{v.node}: heartbeat runs (systemd: {v.unit}) but does not "
                            "answer cl_status: starting, or restarting itself")
        elif not v.heartbeat:
            problems.append(f"{v.node}: heartbeat is not running; fix: `systemctl start "
                            f"heartbeat` on {v.host}, or `hbdeploy deploy` (which starts it)")
        else:
            problems += [f"{v.node} holds only some floating IPs of group {g}"
                         for g in v.partial]
            problems += [f"{v.node} sees {peer} {state}" for peer, state in v.peers.items()
                         if state != "active"]
            problems += [f"{v.node}: link {link} is {state}" for link, state in v.links.items()
                         if state != "up"]
            problems += [stranger_text(v.node, peer, state)
                         for peer, state in v.strangers.items()]
    problems += [f"{w.text()}; `hbdeploy deploy` ends it" for w in wedges(cluster, views)]
    problems += [f"{phantom_text(v, foreign)}; `hbdeploy deploy` restarts heartbeat there"
                 for v, foreign in phantoms(cluster, views, groups)]
    members = [v for v in views if v.reachable and v.heartbeat]
    if len(views) > 1 and len(members) < 2:
        problems.append(f"no spare left: heartbeat runs on {len(members)} of {len(views)} "
                        "nodes, so nothing takes over if "
                        + (f"{members[0].node} fails" if members else "a node starts"))
    if problems and code == HEALTHY:
        code = DEGRADED
    return ClusterStatus(views, groups, problems, code)


def snapshot(cluster: Cluster, targets: list[Target]) -> ClusterStatus:
    """Every target's view, gathered in parallel, and the verdict."""
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        views = list(pool.map(lambda t: node_view(cluster, t.node.name, t.remote), targets))
    return assess(cluster, views)


def cluster_status(cluster: Cluster, connections: Sequence[Connection]) -> ClusterStatus:
    """Status of the nodes behind ``connections`` (matched by name or address)."""
    return snapshot(cluster, match_targets(cluster, connections))

