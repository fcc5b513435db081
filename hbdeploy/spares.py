"""Hot spares: nodes kept ready to replace a member, never members themselves.

A spare gets heartbeat installed (with net-tools, as a member) and its unit masked: it
cannot start, by a reboot, an operator or a package upgrade. It holds no member files
(an old ha.cf, haresources or authkeys and hbdeploy's supervision are taken away), so it
takes no part in the pair's membership. It is verified: pre-flight as a member would be,
then heartbeat's tools and every resource script haresources starts must be there.
`hbdeploy replace DEAD --with SPARE` (membership.py) makes one a member.

heartbeat's haresources manager is a design for two: with three active members the lab
saw the floating IP on two nodes at once after 20 of 20 cuts of the holder
(docs/operations.md, "Hot spares"); a spare outside the pair cannot do that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fabric import Connection

from . import apply, facts, layout
from .facts import HostFacts
from .model import Cluster, Node
from .plan import missing_resource_scripts, missing_tools, preflight
from .remote import Remote, verify_host_keys
from .targets import Target, node_of

MEMBER_FILES = ("ha.cf", "haresources", "authkeys")
STOPPED_STATES = ("inactive", "failed", "")


@dataclass
class SparePlan:
    """What one spare needs, from its facts."""

    host: str
    node: Node
    facts: HostFacts
    install: bool = False
    mask: bool = False  # heartbeat.service not masked (or not stopped) yet
    member_files: tuple[str, ...] = ()  # left from a time as a member: moved aside
    supervision: bool = False  # hbdeploy's drop-in or guard is there: removed

    @property
    def changes_anything(self) -> bool:
        return bool(self.install or self.mask or self.member_files or self.supervision)


def split(cluster: Cluster, connections: Sequence[Connection]
          ) -> tuple[list[Target], list[Connection]]:
    """The connections that are spares (as targets) and the others (members, or unknown)."""
    spares, others = [], []
    for conn in connections:
        given = conn.original_host or conn.host
        spare = node_of(cluster.spares, conn)
        if spare is None:
            others.append(conn)
        else:
            spares.append(Target(given, spare, Remote(verify_host_keys(conn), given)))
    return spares, others


def probe(cluster: Cluster) -> str:
    """The spare's facts, and whether heartbeat's tools and resource scripts are there."""
    tools = " ".join((facts.TOOLS, *layout.resource_paths(cluster.resource_scripts())))
    return facts.probe().replace(facts.TOOLS, tools, 1)


def plan_spare(host: str, node: Node, found: HostFacts) -> SparePlan:
    plan = SparePlan(host, node, found)
    plan.install = node.install and not (found.installed and found.net_tools)
    plan.mask = found.hb_enabled != "masked" or found.hb_active not in STOPPED_STATES
    plan.member_files = tuple(name for name in MEMBER_FILES if name in found.checksums)
    plan.supervision = any(key in found.checksums for key in ("dropin", "guard",
                                                              "guard.service"))
    return plan


def preflight_spare(host: str, node: Node, found: HostFacts, cluster: Cluster) -> list[str]:
    """A member's pre-flight (it must be able to become one), and no heartbeat running."""
    problems = preflight(host, node, found, cluster)
    if found.hb_active == "active":
        problems.append(f"{host}: heartbeat runs there, but spares.{node.name} says it is a "
                        "spare: if it was a member, take it out first (hbdeploy "
                        f"decommission {node.name}), then deploy it as a spare")
    return problems


def unready(host: str, node: Node, found: HostFacts, cluster: Cluster, state: bool = True
            ) -> list[str]:
    """What the spare lacks to take a member's place (after its install); ``state``: and
    whether heartbeat is masked and stopped (what prepare does)."""
    where = f"{host} (spare {node.name})"
    missing = missing_tools(cluster, found)
    problems = []
    if missing:
        problems.append(f"{where}: lacks {', '.join(missing)}")
    scripts = missing_resource_scripts(cluster, found)
    if scripts:
        problems.append(f"{where}: the resource script(s) {', '.join(scripts)} that "
                        f"haresources starts are in neither {' nor '.join(layout.RESOURCE_DIRS)}"
                        ": it could not serve the pair's resources; install the service(s)")
    if state and (found.hb_enabled != "masked" or found.hb_active not in STOPPED_STATES):
        problems.append(f"{where}: heartbeat.service is {found.hb_enabled or 'absent'} and "
                        f"{found.hb_active or 'not loaded'}, expected masked and stopped")
    return problems


# heartbeat stays masked (no start by a reboot, a package upgrade or an operator), its unit
# state clean; a member's files go to hbdeploy's backups, its supervision away.
MASK = "systemctl mask --now heartbeat.service >/dev/null 2>&1; " \
       "systemctl reset-failed heartbeat.service >/dev/null 2>&1; true"


def aside(names: Sequence[str], stamp: str) -> str:
    """Move member files into hbdeploy's backup folder (the key stays root's, mode 0600)."""
    moves = [f"[ -f /etc/ha.d/{name} ] && mv -f /etc/ha.d/{name} "
             f"{layout.BACKUP_DIR}/{name}.{stamp}.spare" for name in names]
    return (f"mkdir -p {layout.BACKUP_DIR} && chmod 700 {layout.BACKUP_DIR}; "
            + "; ".join(moves) + "; true")


def prepare(cluster: Cluster, target: Target, plan: SparePlan, stamp: str,
            say: Callable[[str], None]) -> list[str]:
    """Bring one spare to its state, then verify it; the problems left (empty: ready)."""
    remote = target.remote
    if plan.install:
        say(f"installing {'net-tools' if plan.facts.installed else 'heartbeat and net-tools'}"
            " (spare: heartbeat stays masked)")
        apply.install(remote)
    if plan.supervision:
        apply.remove_supervision(remote)
        say("removed hbdeploy's supervision (a spare runs no heartbeat)")
    if plan.mask or plan.install:
        remote.run(MASK, timeout=600)
        say("heartbeat masked: it cannot start here until `hbdeploy replace` makes this "
            "node a member")
    if plan.member_files:
        remote.run(aside(plan.member_files, stamp))
        say(f"moved a member's {', '.join(plan.member_files)} to {layout.BACKUP_DIR}")
    now = facts.gather(remote, probe(cluster))
    problems = unready(target.host, target.node, now, cluster)
    say("spare ready: heartbeat and the resource scripts in place, heartbeat masked"
        if not problems else "spare NOT ready")
    return problems
