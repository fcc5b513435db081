"""Deploy a cluster: match hosts to nodes, pre-flight all, then install, push, firewall,
restart (one at a time) and verify. Usable without Fabric's CLI: give it connections.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fabric import Connection

from . import apply, facts, firewall
from .announce import announce
from .errors import HbdeployError
from .handover import HB_STANDBY, HB_TAKEOVER, move_deadline, wait_placement
from .model import Cluster
from .plan import HostPlan, plan_host, preflight
from .remote import RemoteError
from .render import mask_authkeys
from .status import node_view, snapshot
from .targets import Target, match_targets

Output = Callable[[str], None]
STEPS = ("install", "files", "firewall", "service")


class DeployError(HbdeployError):
    """The deploy stopped; the message lists every reason."""


@dataclass
class HostResult:
    host: str
    node: str
    steps: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STEPS, "ok"))
    holds: list[str] = field(default_factory=list)


@dataclass
class Recap:
    results: list[HostResult]
    failed: bool = False
    messages: list[str] = field(default_factory=list)

    def table(self) -> str:
        head = f"{'HOST':<16} {'NODE':<12} " + " ".join(f"{s:<9}" for s in STEPS) + " HOLDS"
        rows = [head]
        for r in self.results:
            rows.append(f"{r.host:<16} {r.node:<12} "
                        + " ".join(f"{r.steps[s]:<9}" for s in STEPS)
                        + f" {' '.join(r.holds) or '-'}")
        changed = [r.host for r in self.results if "changed" in r.steps.values()]
        failed = [r.host for r in self.results if "failed" in r.steps.values()]
        if failed:
            rows.append(f"failed: {', '.join(failed)}")
        rows.append(f"changed: {', '.join(changed)}" if changed
                    else f"unchanged: nothing to do on {len(self.results)} host(s)")
        return "\n".join(rows)


def _parallel(func, items):
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(items)))) as pool:
        return list(pool.map(func, items))


def _guard(func):
    """Run ``func``; an exception becomes its message (for per-host parallel steps)."""
    def wrapped(item):
        try:
            return func(item), None
        except (HbdeployError, OSError) as exc:
            return None, str(exc)
    return wrapped


class Deployment:
    """One deploy run over ``targets``; ``out`` receives every line meant for the operator."""

    def __init__(self, cluster: Cluster, targets: list[Target], out: Output = print,
                 verbose: bool = False) -> None:
        self.cluster = cluster
        self.targets = targets
        lock = threading.Lock()

        def locked_out(line: str) -> None:  # hosts work in parallel: one line at a time
            with lock:
                out(line)

        self.out = locked_out
        self.verbose = verbose
        self.results = {t.node.name: HostResult(t.host, t.node.name) for t in targets}
        self.stamp = time.strftime("%Y%m%dT%H%M%S")
        self.plans: dict[str, HostPlan] = {}
        self.pushed: dict[str, list[str]] = {t.node.name: [] for t in targets}
        self.applied: dict[str, str] = {}  # node -> "reload" | "restart" done in this run
        self.placed_before: set[str] = set()

    def say(self, target: Target, message: str) -> None:
        self.out(f"[{target.host}] {message}")

    # -- pre-flight ------------------------------------------------------------------------
    def gather(self) -> dict[str, HostPlan]:
        """Facts of every host, then every pre-flight problem at once, before any change."""
        outcomes = _parallel(_guard(lambda t: facts.gather(t.remote)), self.targets)
        problems, plans = [], {}
        for target, (host_facts, error) in zip(self.targets, outcomes, strict=True):
            if error:
                problems.append(error)
                continue
            problems += preflight(target.host, target.node, host_facts, self.cluster)
            plans[target.node.name] = plan_host(target.host, target.node, host_facts,
                                                self.cluster)
        if problems:
            raise DeployError("pre-flight failed, no host was changed:\n  "
                              + "\n  ".join(problems))
        return plans

    # -- check mode ----------------------------------------------------------------------------
    def show(self, plans: dict[str, HostPlan]) -> None:
        """What each host would get, with unified diffs (authkeys masked); changes nothing."""
        for target in self.targets:
            plan = plans[target.node.name]
            if plan.install:
                self.say(target, "would install heartbeat")
            for name in plan.changed_files:
                rendered = plan.files[name]
                _, old, _ = target.remote.run(f"cat {rendered.remote_path} 2>/dev/null || true")
                new = rendered.content
                if rendered.secret:
                    old, new = mask_authkeys(old), mask_authkeys(new)
                diff = list(difflib.unified_diff(
                    old.splitlines(keepends=True), new.splitlines(keepends=True),
                    f"{rendered.remote_path} (on host)", f"{rendered.remote_path} (new)"))
                self.say(target, f"would write {rendered.remote_path} (mode "
                                 f"{rendered.mode:04o})"
                         + ("" if diff else ": only its mode or owner differs"))
                for line in diff:
                    self.out(f"[{target.host}]   {line.rstrip()}")
            if plan.firewall:
                wanted = firewall.rules(plan.firewall_backend, self.cluster, plan.node)
                self.say(target, f"would put {len(wanted)} firewall rules in place "
                                 f"({firewall.describe(plan.firewall_backend)}):")
                for line in wanted:
                    self.out(f"[{target.host}]   {line}")
            if plan.enable:
                self.say(target, "would enable heartbeat at boot")
            if plan.reload_only:
                self.say(target, "would reload heartbeat (resources kept)")
            elif plan.restart:
                self.say(target, "would start heartbeat" if not plan.facts.running
                         else "would restart heartbeat")
            if not plan.changes_anything:
                self.say(target, "up to date: nothing to do")

    # -- apply ------------------------------------------------------------------------------------
    def prepare(self, plans: dict[str, HostPlan]) -> list[str]:
        """Install, push and firewall every host in parallel; the failures' messages."""

        def one(target: Target) -> None:
            plan, result = plans[target.node.name], self.results[target.node.name]
            step = "install"
            try:
                if plan.install:
                    self.say(target, "installing heartbeat")
                    note = apply.install(target.remote, plan)
                    result.steps["install"] = "changed"
                    for line in note.splitlines():
                        if self.verbose or line.startswith("disabled pacemaker"):
                            self.say(target, line)
                step = "files"
                now = [f for f in plan.changed_files if f not in plan.deferred]
                if now:
                    apply.push(target.remote, plan, self.stamp, now)
                    self.pushed[target.node.name] += now
                    self.say(target, f"wrote {', '.join(now)}")
                if plan.changed_files:
                    result.steps["files"] = "changed"
                step = "firewall"
                if not self.cluster.firewall.enabled:
                    result.steps["firewall"] = "skipped"
                elif plan.firewall:
                    apply.apply_firewall(target.remote, plan)
                    result.steps["firewall"] = "changed"
                    self.say(target, "firewall rules in place "
                                     f"({firewall.describe(plan.firewall_backend)})")
                step = "service"
                if plan.enable:
                    apply.enable(target.remote)
                    result.steps["service"] = "changed"
            except HbdeployError as exc:
                result.steps[step] = "failed"
                raise exc

        outcomes = _parallel(_guard(one), self.targets)
        return [error for _, error in outcomes if error]

    def restart_order(self, plans: dict[str, HostPlan]) -> list[Target]:
        """Hosts to reload or restart, one at a time: running nodes holding nothing, then
        running nodes holding resources, then nodes not running yet — so a joining node
        starts only once its running peers list it and send to it."""
        floating = set(self.cluster.floating_ips())
        todo = [t for t in self.targets if plans[t.node.name].restart]

        def key(t: Target) -> tuple[bool, bool]:
            facts = plans[t.node.name].facts
            return (not facts.running, bool(floating & facts.ips()))

        return sorted(todo, key=key)

    def restart_all(self, plans: dict[str, HostPlan]) -> None:
        """Apply new files to heartbeat one host at a time, never two at once.

        Only ha.cf/authkeys changed on a running node: reload (heartbeat re-reads them and
        keeps its resources). Otherwise restart; a node holding resources first hands them
        to a peer already updated and healthy (hb_standby), so they move once, on purpose.
        """
        was_running = {t.node.name for t in self.targets if plans[t.node.name].facts.running}
        expected_up = set(was_running)
        done: list[Target] = []
        order = self.restart_order(plans)
        if was_running:
            # Placement is checked after each step for the groups that were placed well
            # before the rollout: a step must not unplace them (heartbeat may still be
            # settling an orphaned group it left after a partition; verify waits for that).
            self.placed_before = {g for g, h in snapshot(self.cluster, self.targets)
                                  .groups.items() if len(h) == 1}
        if not was_running and len(order) > 1 and (
                {t.node.name for t in order} == set(self.cluster.node_names)):
            self._start_together(order)
            return
        reloaded = self._rekey(order, plans, was_running)
        for target in order:
            plan = plans[target.node.name]
            name = target.node.name
            peers = expected_up - {name}
            if name in reloaded and plan.reload_only:
                done.append(target)
                continue
            if plan.reload_only:
                self.say(target, f"reloading heartbeat ({', '.join(plan.changed_files)} "
                                 "re-read, resources kept)")
                apply.reload(target.remote, plan.heartbeat_path)
                self.applied[name] = "reload"
                self.results[name].steps["service"] = "reloaded"
                self._settle(target, plan, peers, check_groups=True)
                done.append(target)
                continue
            holding = self._held_by(name) if name in was_running else []
            ready_peers = [t for t in done if t.node.name != name] or [
                t for t in self.targets
                if t.node.name in was_running and t.node.name != name
                and not plans[t.node.name].restart]
            if holding and ready_peers and len(self.cluster.nodes) == 2:
                # hb_standby is only safe between two nodes (see handover.two_nodes_only);
                # with more, the restart's own graceful stop hands the resources over.
                self._hand_over(target, holding, done)
            if plan.deferred:
                if plan.facts.running:
                    apply.stop(target.remote)  # releases what the old haresources started
                apply.push(target.remote, plan, self.stamp, plan.deferred)
                self.pushed[name] += plan.deferred
                self.say(target, f"wrote {', '.join(plan.deferred)} (after releasing "
                                 "its resources)")
            verb = "restarting" if plan.facts.running else "starting"
            self.say(target, f"{verb} heartbeat")
            self.applied[name] = "restart"
            apply.restart(target.remote)
            self.results[name].steps["service"] = "changed"
            expected_up.add(name)
            self._settle(target, plan, peers, check_groups=bool(was_running))
            done.append(target)

    def _start_together(self, order: list[Target]) -> None:
        """A new cluster (heartbeat runs on none of its nodes, all are targets) starts on
        every node at once, as after a power cut: there is no service to keep up, and
        heartbeat's initdead is made for it. Then each must see every other active."""
        for target in order:
            self.say(target, "starting heartbeat (with every node: none was running)")
            self.applied[target.node.name] = "restart"
        with ThreadPoolExecutor(max_workers=len(order)) as pool:
            for target, future in [(t, pool.submit(apply.restart, t.remote)) for t in order]:
                try:
                    future.result()
                except RemoteError as exc:
                    self.results[target.node.name].steps["service"] = "failed"
                    self.say(target, f"FAILED: {exc}")
                    self.roll_back()
                    raise DeployError(f"{target.host}: heartbeat did not start ({exc}); "
                                      "previous files restored on every host") from None
        names = {t.node.name for t in order}
        for target in order:
            self.results[target.node.name].steps["service"] = "changed"
            self._settle(target, self.plans[target.node.name], names - {target.node.name},
                         check_groups=False, booting=True)

    def _rekey(self, order: list[Target], plans: dict[str, HostPlan],
               was_running: set[str]) -> set[str]:
        """A new password first reaches every running node by reload, back to back.

        Nodes with different keys cannot hear each other; a reload takes about a second, far
        less than deadtime, whereas waiting for a restarted node to see peers that still use
        the old key would never end. Returns the nodes reloaded here.
        """
        rekey = [t for t in order if t.node.name in was_running
                 and "authkeys" in plans[t.node.name].changed_files]
        if not rekey or all(plans[t.node.name].reload_only for t in rekey):
            return set()
        for target in rekey:
            self.say(target, "reloading heartbeat for the new password (ahead of restarts)")
            apply.reload(target.remote, plans[target.node.name].heartbeat_path)
            self.applied[target.node.name] = "reload"
            self.results[target.node.name].steps["service"] = "reloaded"
        for target in rekey:
            self._settle(target, plans[target.node.name], was_running - {target.node.name},
                         check_groups=True)
        return {t.node.name for t in rekey}

    def _settle(self, target: Target, plan: HostPlan, peers: set[str],
                check_groups: bool, booting: bool = False) -> None:
        """Wait until ``target`` is healthy; else roll it back and stop the rollout."""
        try:
            self.wait_healthy(target, peers, check_groups, booting)
        except RemoteError as exc:
            self.results[target.node.name].steps["service"] = "failed"
            self.say(target, f"FAILED: {exc}; the journal's last lines:")
            for line in apply.journal(target.remote).splitlines():
                self.out(f"[{target.host}]   journal: {line}")
            self.roll_back()
            raise DeployError(f"{target.host}: heartbeat did not come up healthy "
                              f"({exc}); previous files restored on every host, rollout "
                              "stopped before the next host") from None

    def _held_by(self, node: str) -> list[str]:
        groups = snapshot(self.cluster, self.targets).groups
        return [g for g, holders in groups.items() if node in holders]

    def _hand_over(self, target: Target, groups: list[str], updated: list[Target]) -> None:
        """hb_standby on ``target``; when its groups do not land elsewhere, the updated peers
        are rolled back and ``target`` takes its groups back."""
        self.say(target, f"handing {', '.join(groups)} over to a peer before its restart")
        target.remote.run(HB_STANDBY, timeout=120)
        try:
            wait_placement(self.cluster, self.targets, lambda held: all(
                len(held[g]) == 1 and target.node.name not in held[g] for g in groups),
                move_deadline(self.cluster), f"{target.host} handing over {', '.join(groups)}")
        except HbdeployError as exc:
            self.say(target, f"FAILED: {exc}")
            for peer in updated:
                self.results[peer.node.name].steps["service"] = "failed"
                self.say(peer, "the journal's last lines:")
                for line in apply.journal(peer.remote).splitlines():
                    self.out(f"[{peer.host}]   journal: {line}")
            self.roll_back()
            target.remote.run(f"{HB_TAKEOVER} all", check=False, timeout=120)
            raise DeployError(
                f"the handover from {target.host} failed ({exc}): the updated peers "
                f"({', '.join(p.host for p in updated) or 'none'}) got their previous files "
                f"back, {target.host} was left unchanged and took its groups back; rollout "
                "stopped") from None
        self.say(target, "handover complete")

    def wait_healthy(self, target: Target, peers: set[str], check_groups: bool = False,
                     booting: bool = False) -> None:
        """Poll until heartbeat runs on ``target`` and sees ``peers`` active (and, on a
        running cluster, each resource group is held by exactly one node). ``booting``:
        the peers started at the same time, so they may take initdead too."""
        t = self.cluster.timings
        peers_sorted = sorted(peers)
        wait_ms = 2 * t.deadtime.ms if peers else 0  # a peer declared dead, and back
        if booting or not peers:
            wait_ms += t.initdead.ms  # heartbeat's own wait for its peers after a start
        deadline = wait_ms / 1000 + 15

        def healthy() -> bool:
            view = node_view(self.cluster, target.node.name, target.remote)
            if not (view.heartbeat and all(view.peers.get(p) == "active" for p in peers)):
                return False
            if check_groups:
                groups = snapshot(self.cluster, self.targets).groups
                return all(len(groups[g]) == 1 for g in self.placed_before if g in groups)
            return True

        apply.wait_until(f"{target.host}: heartbeat up and peers "
                         f"{', '.join(peers_sorted) or '(none yet)'} active", healthy, deadline)
        self.say(target, "heartbeat up" + (f", sees {', '.join(peers_sorted)} active"
                                           if peers_sorted else ""))

    def roll_back(self) -> None:
        """Put the previous files back on every host this run wrote to, and make heartbeat
        read them again where it had read the new ones (reload or restart, as it did)."""
        for target in self.targets:
            name = target.node.name
            if not self.pushed[name]:
                continue
            restored = apply.restore(target.remote, self.pushed[name], self.stamp)
            how = self.applied.get(name)
            self.say(target, f"restored the previous {', '.join(restored)}"
                     + {"reload": "; reloading", "restart": "; restarting"}.get(how or "", ""))
            try:
                if how == "reload":
                    apply.reload(target.remote, self.plans[name].heartbeat_path)
                elif how == "restart":
                    apply.restart(target.remote)
            except RemoteError as exc:
                self.say(target, f"heartbeat with the previous files failed too: {exc}")

    def _announce(self, holders: dict[str, list[str]]) -> None:
        """Each holder announces its floating IPs (see announce.py): after a healed
        partition, the network may still send them to the spare."""
        for target in self.targets:
            ips = [ip for ip, held in holders.items() if held == [target.node.name]]
            try:
                announce(target.remote, ips)
            except RemoteError as exc:
                self.say(target, f"could not announce {', '.join(ips)} (gratuitous ARP): {exc}")

    def _adopt_orphans(self, holders: dict[str, list[str]],
                       orphaned_since: dict[str, float]) -> None:
        """A group that no node holds while every node is active is an outage heartbeat
        does not always end by itself (seen in the lab after a healed partition, with
        auto_failback off: "No one owns our local resources!" for good). After twice deadtime
        its preferred node takes it (hb_takeover local)."""
        now = time.monotonic()
        patience = 2 * self.cluster.timings.deadtime.ms / 1000
        for group in self.cluster.groups:
            ips = group.floating_ips()
            if not ips or any(holders[ip] for ip in ips):
                orphaned_since.pop(group.node, None)
                continue
            since = orphaned_since.setdefault(group.node, now)
            owner = next((t for t in self.targets if t.node.name == group.node), None)
            if owner is not None and now - since >= patience:
                self.say(owner, f"group {group.node} is held by no node (orphaned after a "
                                "partition): hb_takeover local")
                owner.remote.run(f"{HB_TAKEOVER} local", check=False, timeout=120)
                orphaned_since[group.node] = now + patience  # give it time before again

    # -- verify ---------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Each floating IP held by exactly one node and answering from a peer."""
        floating = list(self.cluster.floating_ips())
        names = [t.node.name for t in self.targets]
        t = self.cluster.timings
        # initdead for a fresh start; after a healed partition heartbeat needed up to 45 s
        # in the lab to give an orphaned group back to a node.
        deadline = (t.initdead.ms + 2 * t.deadtime.ms) / 1000 + 45
        orphaned_since: dict[str, float] = {}

        def placed() -> dict[str, list[str]] | None:
            views = snapshot(self.cluster, self.targets).nodes
            holders: dict[str, list[str]] = {ip: [] for ip in floating}
            for view in views:
                self.results[view.node].holds = sorted(view.floating)
                if not view.heartbeat or any(view.peers.get(n) != "active"
                                             for n in names if n != view.node):
                    return None
                for ip in view.floating:
                    holders[ip].append(view.node)
            self._adopt_orphans(holders, orphaned_since)
            if not all(len(h) == 1 for h in holders.values()):
                return None
            # With auto_failback on, a group returns to its preferred node when it is up.
            if self.cluster.auto_failback == "on" and any(
                    holders[ip] != [group.node] for group in self.cluster.groups
                    if group.node in names for ip in group.floating_ips()):
                return None
            return holders

        what = ("every node active and each floating IP held once"
                + (" by its preferred node" if self.cluster.auto_failback == "on" else ""))
        end = time.monotonic() + deadline
        settled = placed()  # a healthy cluster at first sight: no wait
        while True:
            # Placement, then answers: heartbeat may still be settling a partition it just
            # healed and move a group again, so a silent IP is checked anew until the deadline.
            try:
                holders = settled or apply.wait_until(what, placed,
                                                      max(end - time.monotonic(), 1))
                if not settled:
                    # It was moving: the placement must now hold for twice deadtime.
                    steady_end = time.monotonic() + 2 * t.deadtime.ms / 1000
                    now = holders
                    while time.monotonic() < steady_end and now == holders:
                        time.sleep(0.5)
                        now = placed()
                    if now != holders:
                        if time.monotonic() > end:
                            return [f"{what}: placement still changing after "
                                    f"{deadline:.0f}s"]
                        continue
            except RemoteError as exc:
                return [str(exc)]
            settled = None
            self._announce(holders)
            problems = [problem for ip, (holder,) in holders.items()
                        if (problem := self._silent(ip, holder))]
            if not problems or time.monotonic() > end:
                return problems

    def _silent(self, ip: str, holder: str) -> str | None:
        """Why ``ip`` (held by ``holder``) does not answer ping from a peer; None if it does."""
        probe = next((tg for tg in self.targets if tg.node.name != holder), None)
        if probe is None:
            return None
        # One reply within 10 s: right after a move a peer's ARP entry may still be stale.
        code, _, _ = probe.remote.run(f"ping -n -c 1 -w 10 {ip}", check=False, timeout=30)
        if code == 0:
            return None
        return (f"floating IP {ip} (on {holder}) does not answer ping from "
                f"{probe.node.name} within 10s")


def deploy_cluster(cluster: Cluster, connections: Sequence[Connection], *, check: bool = False,
                   out: Output = print, verbose: bool = False,
                   guard: Callable[[dict[str, HostPlan]], None] | None = None) -> Recap:
    """Deploy ``cluster`` to ``connections``; raises DeployError when pre-flight fails.

    ``guard`` sees every plan after pre-flight and may refuse the run (DeployError).
    """
    targets = match_targets(cluster, connections)
    run = Deployment(cluster, targets, out, verbose)
    plans = run.plans = run.gather()
    if guard:
        guard(plans)
    if check:
        run.show(plans)
        return Recap(list(run.results.values()))
    recap = Recap(list(run.results.values()))
    errors = run.prepare(plans)
    if errors:
        recap.failed = True
        recap.messages += errors
        return recap
    try:
        run.restart_all(plans)
    except DeployError as exc:
        recap.failed = True
        recap.messages.append(str(exc))
        return recap
    problems = run.verify()
    if problems:
        recap.failed = True
        recap.messages += problems
        if any(run.pushed.values()):
            # The new configuration did not come up as a whole: put the previous one back.
            for target in targets:
                if any(g.node == target.node.name for g in cluster.groups):
                    run.say(target, "the journal's last lines:")
                    for line in apply.journal(target.remote).splitlines():
                        run.out(f"[{target.host}]   journal: {line}")
            run.roll_back()
            recap.messages.append("the new configuration did not come up: previous files "
                                  "restored on every host written to")
    return recap
