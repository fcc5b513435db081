"""Adding a hot spare to a running cluster, and taking a node out, without moving the
floating IPs on purpose."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fabric import Connection

from . import handover, lock
from .apply import remove_firewall, remove_supervision, remove_sysctl, wait_until
from .deploy import DeployError, Output, Recap, deploy_cluster
from .model import Cluster
from .plan import HostPlan
from .remote import Remote, verify_host_keys
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
    _, uname, _ = remote.run("uname -n")
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
    recap = deploy_cluster(cluster, remaining, out=out)
    if not recap.failed:
        stay = cluster.timings.deadtime.ms / 1000 + 2
        for conn in remaining:
            peer = Remote(conn, conn.original_host or conn.host)

            # The reload above made heartbeat re-exec itself (awaited by the rollout); before
            # that was awaited, a re-exec after hb_delnode brought the node back once (CI),
            # so it must stay forgotten for deadtime + 2 s.
            since: list[float] = []

            def forgotten(peer: Remote = peer, since: list[float] = since) -> bool:
                code, _, _ = peer.run(
                    f"if cl_status listnodes 2>/dev/null | grep -qx {node}; then "
                    f"/usr/share/heartbeat/hb_delnode {node} >/dev/null 2>&1; exit 1; fi",
                    check=False)
                if code != 0:
                    since.clear()
                    return False
                since[:] = since or [time.monotonic()]
                return time.monotonic() - since[0] >= stay

            wait_until(f"{peer.label} forgetting {node} (hb_delnode)", forgotten, 30 + stay,
                       1.0)
        out(f"[{name}] left the cluster")
    return recap


def _addresses(remote: Remote) -> list[str]:
    _, out, _ = remote.run("ip -o -4 addr show | awk '{print $4}' | cut -d/ -f1")
    return out.split()
