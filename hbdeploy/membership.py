"""Adding a hot spare to a running cluster, and taking a node out, without moving the
floating IPs on purpose."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from fabric import Connection

from . import equivalence, handover, lock, spares, supervision
from .apply import remove_firewall, remove_supervision, remove_sysctl
from .converge import repair_claims
from .deploy import DeployError, Output, Recap, deploy_cluster
from .model import Cluster
from .nodelist import forget
from .plan import HostPlan
from .remote import Remote, RemoteError, verify_host_keys
from .targets import match_targets


def bootstrap(cluster: Cluster, new_hosts: Sequence[Connection], others: Sequence[Connection],
              out: Output = print, check: bool = False, break_lock: bool = False) -> Recap:
    """Install and start the new node(s); the running nodes only re-read ha.cf (reload).

    Refused when a running node would need more than an ha.cf change (a restart could move
    its resources): run `deploy` for that first.
    """
    new_names = {c.original_host or c.host for c in new_hosts}

    def only_hacf_on_running_nodes(plans: dict[str, HostPlan]) -> None:
        problems = []
        for name, plan in plans.items():
            if plan.host in new_names or name in new_names:
                continue
            if not plan.facts.running:
                problems.append(f"{plan.host}: heartbeat is not running; bootstrap joins a "
                                "new node to a running cluster (use deploy)")
            elif plan.changed_files and not plan.reload_only:
                problems.append(f"{plan.host}: {', '.join(plan.changed_files)} would change, "
                                "more than the new node's lines in ha.cf: run deploy first")
        if problems:
            raise DeployError("bootstrap refused, no host was changed:\n  "
                              + "\n  ".join(problems))

    return deploy_cluster(cluster, [*new_hosts, *others], out=out, check=check,
                          guard=only_hacf_on_running_nodes, command="bootstrap",
                          break_lock=break_lock)


def decommission(cluster: Cluster, leaving: Connection, remaining: Sequence[Connection],
                 out: Output = print, break_lock: bool = False) -> Recap:
    """Take ``leaving`` (no longer in the cluster file) out: it hands its groups over and
    stops; the remaining nodes drop it from ha.cf (reload) and from membership. Holds the
    run lock on every node meanwhile (lock.py)."""
    name = leaving.original_host or leaving.host
    if name in cluster.node_names:
        raise DeployError(f"{name} is still in the cluster file's nodes: remove it first, "
                          "then decommission it")
    remote = Remote(verify_host_keys(leaving), name)
    staying = [t.remote for t in match_targets(cluster, remaining)]
    with lock.holding([remote, *staying], "decommission", break_lock=break_lock, out=out):
        return _decommission(cluster, remote, name, remaining, out)


def _decommission(cluster: Cluster, remote: Remote, name: str, remaining: Sequence[Connection],
                  out: Output) -> Recap:
    _, uname, _ = remote.run("uname -n", idempotent=True)
    node = uname.strip()
    held = [g.node for g in cluster.groups
            if set(g.floating_ips()) & set(_addresses(remote))]
    if held:
        out(f"[{name}] handing {', '.join(held)} over before it leaves")
        remote.run(handover.HB_STANDBY, timeout=120)
        handover.wait_placement(
            cluster, match_targets(cluster, remaining),
            lambda groups: all(len(groups[g]) == 1 for g in held),
            handover.move_deadline(cluster), f"{name} handing over {', '.join(held)}")
    out(f"[{name}] stopping and disabling heartbeat")
    remove_supervision(remote)  # first: the guard must not start heartbeat again
    remote.run("systemctl disable --now heartbeat.service", timeout=600)
    remove_firewall(remote)
    remove_sysctl(remote)
    recap = deploy_cluster(cluster, remaining, out=out, command="decommission")
    if not recap.failed:
        forget(cluster, [Remote(c, c.original_host or c.host) for c in remaining], node)
        out(f"[{name}] left the cluster")
        # heartbeat took the stopped node for a dead one whose resources it now holds:
        # where a survivor holding nothing believes so, it would take no failover over
        problems = repair_claims(cluster, match_targets(cluster, remaining),
                                 lambda t, line: out(f"[{t.host}] {line}"))
        if problems:
            recap.failed = True
            recap.messages += problems
    return recap


def _addresses(remote: Remote) -> list[str]:
    _, out, _ = remote.run("ip -o -4 addr show | awk '{print $4}' | cut -d/ -f1",
                            idempotent=True)
    return out.split()


FENCE = (f"{supervision.REMOVE}; {spares.MASK}; "
         "systemctl is-active -q heartbeat.service && exit 1; exit 0")


def replace(cluster: Cluster, dead: Connection, spare: str, members: Sequence[Connection],
            out: Output = print, fenced: bool = False, break_lock: bool = False) -> Recap:
    """Make ``spare`` a member in ``dead``'s place, without taking the floating IPs down.

    The cluster file already says so (``spare`` in nodes, ``dead`` gone): the survivors
    re-read ha.cf and haresources (a reload, resources kept), the spare starts, and the
    survivors forget ``dead``. ``dead`` is fenced first when it answers (heartbeat masked);
    when it does not, the member gate keeps it out when it comes back (supervision.py), and
    a cluster deployed without the gate needs ``fenced`` (the operator's word that it
    cannot come back)."""
    started = time.monotonic()
    dead_name = dead.original_host or dead.host
    _refuse_unless_edited(cluster, dead_name, spare)
    targets = match_targets(cluster, members)
    survivors = [t for t in targets if t.node.name != spare]
    if not any(t.node.name == spare for t in targets):
        raise DeployError(f"{spare} must be one of the hosts of the run")
    if not survivors:
        raise DeployError("no survivor: replace keeps a running member serving; with none "
                          "running, deploy the cluster instead")
    gated = _survivors_agree_dead(survivors, dead_name)
    renamed = {dead_name: spare}

    def reload_renamed(plans: dict[str, HostPlan]) -> None:
        for target in survivors:
            plan = plans[target.node.name]
            old = plan.facts.texts.get("haresources", "")
            if "haresources" in plan.changed_files and equivalence.same(
                    "haresources", rename(old, renamed), plan.files["haresources"].content):
                plan.reload_haresources = True  # a re-exec reads it; resources are kept
        problems = [f"{t.host}: heartbeat is not running; replace keeps the pair serving "
                    "from the survivors (deploy the cluster when none runs)"
                    for t in survivors if not plans[t.node.name].facts.running]
        problems += [f"{t.host}: {', '.join(plans[t.node.name].changed_files)} would change "
                     f"beyond {dead_name} -> {spare}: deploy that change first, or after"
                     for t in survivors if plans[t.node.name].changed_files
                     and not plans[t.node.name].reload_only]
        if plans[spare].facts.running:
            problems.append(f"{spare}: heartbeat already runs there, so it is a member "
                            "already (an earlier replace got that far): run deploy to "
                            "converge the pair")
        if problems:
            raise DeployError("replace refused, no host was changed:\n  "
                              + "\n  ".join(problems))
        _fence(dead, dead_name, gated, fenced, out)  # every pre-flight has passed

    out(f"replacing {dead_name} with {spare}: the survivors "
        f"({', '.join(t.node.name for t in survivors)}) re-read their files, {spare} starts")
    recap = deploy_cluster(cluster, members, out=out, guard=reload_renamed, command="replace",
                           break_lock=break_lock)
    if recap.failed:
        return recap
    forget(cluster, [t.remote for t in survivors], dead_name)
    # the new member started while the survivors still listed the dead node: heartbeat
    # may have marked that node's (none) as taken there too (converge.phantom_claims)
    problems = repair_claims(cluster, targets, lambda t, line: out(f"[{t.host}] {line}"))
    if problems:
        recap.failed = True
        recap.messages += problems
        return recap
    out(f"{spare} replaced {dead_name}: a full pair again "
        f"{time.monotonic() - started:.1f} s after the command started (every member sees "
        "the others active, each group held once)")
    return recap


def rename(haresources: str, names: dict[str, str]) -> str:
    """haresources with each line's preferred node renamed (``names``: old -> new)."""
    def one(match: re.Match[str]) -> str:
        lead, first = match.group(1), match.group(2)
        return lead + names.get(first, first)

    return re.sub(r"^(\s*)(\S+)", one, haresources, flags=re.MULTILINE)


def _refuse_unless_edited(cluster: Cluster, dead: str, spare: str) -> None:
    where = cluster.source or "the cluster file"
    if dead in cluster.node_names or spare not in cluster.node_names:
        spare_ip = next((n.ip for n in (*cluster.spares, *cluster.nodes) if n.name == spare),
                        "ITS_IP")
        raise DeployError(
            f"edit {where} first, then rerun (the file is what every later deploy follows): "
            f"under nodes, put `{spare}: {spare_ip}` in place of {dead}'s line; take {spare} "
            f"out of spares; under resources, rename {dead} to {spare}")
    if spare == dead:
        raise DeployError("a node cannot replace itself")


def _survivors_agree_dead(survivors: Sequence, dead: str) -> bool:
    """Every survivor's heartbeat declares ``dead`` dead (else DeployError); whether each
    one's drop-in has the member gate (so ``dead``, deployed with them, has it too)."""
    gated, problems = True, []
    for target in survivors:
        _, state, _ = target.remote.run(
            f"cl_status nodestatus {dead} 2>/dev/null; "
            f"grep -q '{supervision.GUARD_PATH} gate' {supervision.DROPIN_PATH} 2>/dev/null "
            "&& echo gated", check=False, idempotent=True)
        words = state.split()
        gated = gated and "gated" in words
        if words[:1] and words[0] not in ("dead", "gated"):
            problems.append(f"{target.host} sees {dead} {words[0]}: it is not dead; take it "
                            f"out with standby and decommission instead")
    if problems:
        raise DeployError("replace refused, no host was changed:\n  " + "\n  ".join(problems))
    return gated


def _fence(dead: Connection, name: str, gated: bool, fenced: bool, out: Output) -> None:
    """Mask heartbeat on ``dead`` when it answers; else make sure it cannot come back."""
    dead.connect_timeout = 5
    remote = Remote(verify_host_keys(dead), name)
    try:
        code, _, err = remote.run(FENCE, check=False, timeout=120)
    except (RemoteError, OSError) as exc:
        if not gated and not fenced:
            raise DeployError(
                f"{name} does not answer ({exc}), and the survivors were deployed without "
                "the member gate (the cluster had no spares then), so it has none either: "
                "coming back it would declare its peers dead and take the floating IPs. "
                f"Make sure it cannot (power it off, take it off the network), then rerun "
                "with --fenced") from None
        out(f"[{name}] does not answer: not fenced now; "
            + ("if it comes back, the member gate keeps its heartbeat from starting while "
               "the pair serves without it; run `hbdeploy decommission "
               f"{name}` once it answers" if not fenced else
               "--fenced: the operator says it cannot come back"))
        return
    if code != 0:
        raise DeployError(f"{name} answers, but its heartbeat did not stop ({err.strip()}); "
                          "hbdeploy's supervision was removed there, nothing else changed "
                          "anywhere: stop it (or power the node off), then rerun")
    out(f"[{name}] fenced: hbdeploy's supervision removed, heartbeat stopped and masked")
