"""Rollout: new files reach heartbeat one node at a time (reload or restart), never two at
once; a node holding resources hands them to an updated peer first. A node that does not
come up healthy stops the rollout; the run's files are rolled back (rollback.py) when the
configuration is at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import apply, nodelist
from .cli import raise_if_interrupted
from .converge import config_fault
from .errors import HbdeployError
from .facts import listed_by_running, peer_states
from .handover import (
    HB_TAKEOVER,
    HandoverError,
    hand_over,
    holders_text,
    holds_alone,
    settle_exchanges,
    wait_placement,
    window,
)
from .plan import HostPlan
from .remote import RemoteError
from .rollback import roll_back
from .status import node_view, snapshot
from .targets import Target

if TYPE_CHECKING:
    from .deploy import Deployment


class RolloutError(HbdeployError):
    """The rollout stopped; the message says whether the previous files were restored."""


class Rollout:
    """Restarts and reloads of one deploy run (``run`` holds its state and output)."""

    def __init__(self, run: Deployment) -> None:
        self.run = run
        self.cluster = run.cluster
        self.targets = run.targets
        self.plans = run.plans
        self.results = run.results
        self.pushed = run.pushed
        self.staged = run.staged
        self.applied = run.applied
        self.stamp = run.stamp
        self.say = run.say
        self.out = run.out
        self.placed_before: set[str] = set()

    def restart_order(self, plans: dict[str, HostPlan]) -> list[Target]:
        """Hosts to reload or restart, one at a time: stopped members the running nodes
        already list, then running nodes holding nothing, then running nodes holding
        resources, then nodes not running yet that no running node lists — so a joining
        node starts only once its running peers list it and send to it, and a holder has
        an updated peer to hand its groups to even when that peer's heartbeat was down
        (CI: a peer in heartbeat's own restart when the run began; the holder was restarted
        first, with no peer up, and its floating IP went down)."""
        todo = [t for t in self.targets if plans[t.node.name].restart]
        listed = self._listed_members(plans)

        def key(t: Target) -> tuple[int, bool]:
            plan = plans[t.node.name]
            if plan.facts.running:
                return (1, self._held_floating(plan))
            return (0 if t.node.name in listed else 2, False)

        return sorted(todo, key=key)

    def _listed_members(self, plans: dict[str, HostPlan]) -> set[str]:
        """Nodes whose heartbeat is not running that a running node's view lists as a peer
        (dead or otherwise, not unknown): members already, not joining ones."""
        listed = listed_by_running(self.cluster, {t.node.name: plans[t.node.name].facts
                                                  for t in self.targets})
        return {name for name in listed if name in plans and not plans[name].facts.running}

    def restart_all(self, plans: dict[str, HostPlan]) -> None:
        """Apply new files to heartbeat one host at a time, never two at once.

        Only ha.cf/authkeys changed on a running node: reload (heartbeat re-reads them and
        keeps its resources). Otherwise restart; a node holding resources first hands them
        to a peer already updated and healthy (hb_standby), so they move once, on purpose.
        Nodes joining a running cluster are first put in every running node's node list
        (:meth:`_introduce`), and start after their running peers have re-read ha.cf.
        """
        was_running = {t.node.name for t in self.targets if plans[t.node.name].facts.running}
        expected_up = set(was_running)
        done: list[Target] = []
        order = self.restart_order(plans)
        if not order:
            return
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
        self._introduce(order, plans, was_running)
        reloaded = self._rekey(order, plans, was_running)
        reloaded |= self._switch_media(order, plans, expected_up, reloaded)
        for target in order:
            raise_if_interrupted()  # its KeyboardInterrupt may have been lost
            plan = plans[target.node.name]
            name = target.node.name
            peers = expected_up - {name}
            if name in reloaded and plan.reload_only:
                done.append(target)
                continue
            if plan.reload_only:
                self.say(target, f"reloading heartbeat ({', '.join(plan.rereading)} "
                                 "re-read, resources kept)")
                mark = apply.signal_reload(target.remote)
                self.applied[name] = "reload"
                self.results[name].steps["service"] = "reloaded"
                reexec = mark if "ha.cf" in plan.rereading else None
                self._settle(target, plan, peers, check_groups=True, reexec_mark=reexec)
                done.append(target)
                continue
            holding = self._held_by(target, self._held_floating(plan)) \
                if name in was_running else []
            ready_peers = [t for t in done if t.node.name != name] or [
                t for t in self.targets
                if t.node.name in was_running and t.node.name != name
                and not plans[t.node.name].restart]
            if holding and ready_peers and len(self.cluster.nodes) == 2:
                # hb_standby is only safe between two nodes (see handover.two_nodes_only);
                # with more, the restart's own graceful stop hands the resources over.
                self._hand_over(target, holding, done)
            elif plan.facts.running and len(expected_up) > 1:
                # not in the middle of a standby exchange (a handover has just ended its own)
                settle_exchanges(self.cluster, self.targets,
                                 lambda line, t=target: self.say(t, line), "restarting")
            if plan.deferred:
                # stopped first: releases what the old haresources started
                apply.stop(target.remote)
                apply.commit(target.remote, plan.deferred, self.stamp)  # staged by prepare
                self.staged[name] -= set(plan.deferred)
                self.pushed[name] += plan.deferred
                self.results[name].steps["files"] = "changed"
                self.say(target, f"wrote {', '.join(plan.deferred)} (with heartbeat "
                                 "stopped, for its restart)")
            verb = "restarting" if plan.facts.running else "starting"
            self.say(target, f"{verb} heartbeat")
            self.applied[name] = "restart"
            self.results[name].steps["service"] = "changed"
            expected_up.add(name)
            self._settle(target, plan, peers, check_groups=bool(was_running),
                         start=lambda t=target: apply.restart(t.remote))
            done.append(target)

    def _switch_media(self, order: list[Target], plans: dict[str, HostPlan],
                      expected_up: set[str], reloaded: set[str]) -> set[str]:
        """heartbeat's media change (deploy.Deployment._plan_media): every running node
        re-reads ha.cf at the same moment — the signals sent together, then each re-exec
        and each node's health awaited — instead of one at a time, when the node re-read
        first would hear no peer and, after deadtime, take their resources. Returns the
        nodes reloaded."""
        names = set(self.run.media_switch) - reloaded  # a password's passes did it already
        together = [t for t in order if t.node.name in names and plans[t.node.name].reload_only]
        if len(together) < 2:
            return set()
        self.say(together[0], f"reloading heartbeat on {', '.join(t.node.name for t in together)}"
                              " at once: ha.cf's media change (udpport, mode, interface or "
                              "multicast group); one at a time they would not hear each other")
        with ThreadPoolExecutor(max_workers=len(together)) as pool:
            marks = list(pool.map(lambda t: apply.signal_reload(t.remote), together))
        for target in together:
            self.applied[target.node.name] = "reload"
            self.results[target.node.name].steps["service"] = "reloaded"
        pending = self._await_reexecs(list(zip(together, marks, strict=True)))
        for target in together:
            self._settle(target, plans[target.node.name], expected_up - {target.node.name},
                         check_groups=True, reexec_mark=pending.get(target.node.name))
        return {t.node.name for t in together}

    def _await_reexecs(self, marks: list[tuple[Target, str]]) -> dict[str, str]:
        """Every node's re-exec after its signal (``marks``) awaited side by side, before
        any node's health (apply.await_reexecs): each node's health needs its peers'
        re-execs done (in the lab a stuck one waited behind its peer's 17 s health wait, and
        the peer, hearing nothing, took the floating IP). The nodes whose wait failed, by
        name, with their marks: the wait is made again where it is reported (_settle)."""
        pending = {}
        outcomes = apply.await_reexecs([(t.remote, mark) for t, mark in marks])
        for (target, mark), outcome in zip(marks, outcomes, strict=True):
            if isinstance(outcome, RemoteError):
                pending[target.node.name] = mark
            elif outcome:
                self.say(target, outcome)
        return pending

    def _introduce(self, order: list[Target], plans: dict[str, HostPlan],
                   was_running: set[str]) -> None:
        """Nodes about to start that a running node does not list yet join every running
        node's node list first, with heartbeat's ``hb_addnode`` — before any running node
        re-reads ha.cf.

        A heartbeat that (re)starts asks one peer for the node list (reqnodes) and takes
        its answer as the truth: a node missing from it is removed ("Removing node [..]
        from configuration") and its packets are refused ("bad node") from then on. A
        running node that re-executes with the new ha.cf and asks a peer that has not
        re-read it yet therefore drops the new node, and the peer that asks it next drops
        it too (heartbeat 3.0.6's heartbeat.c; a CI run, 1 bootstrap in about 15). With
        one running node nobody holds an old list, so only two or more need this.
        """
        if len(was_running) < 2:
            return
        joining = {t.node.name for t in order if t.node.name not in was_running}
        running = [t for t in self.targets if t.node.name in was_running]
        unlisted = sorted({peer for t in running
                           for peer, state in peer_states(self.cluster, t.node.name,
                                                          plans[t.node.name].facts).items()
                           if state == "unknown" and peer in joining})
        if not unlisted:
            return
        self.say(running[0], f"adding {', '.join(unlisted)} to the running nodes' node lists "
                             f"(hb_addnode), before any of them re-reads ha.cf")
        self.run.introduced = unlisted
        try:
            nodelist.introduce([t.remote for t in running], unlisted)
        except RemoteError as exc:
            self.say(running[0], f"FAILED: {exc}")
            roll_back(self.run)
            raise RolloutError(f"{exc}: previous files restored on every host, no running "
                               "node re-read them") from None

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
                    if said := future.result():
                        self.say(target, said)
                except RemoteError as exc:
                    self.results[target.node.name].steps["service"] = "failed"
                    self.say(target, f"FAILED: {exc}")
                    roll_back(self.run)
                    raise RolloutError(f"{target.host}: heartbeat did not start ({exc}); "
                                      "previous files restored on every host") from None
        names = {t.node.name for t in order}
        for target in order:
            self.results[target.node.name].steps["service"] = "changed"
            self._settle(target, self.plans[target.node.name], names - {target.node.name},
                         check_groups=False, booting=True)

    def _rekey(self, order: list[Target], plans: dict[str, HostPlan], was_running: set[str]
               ) -> set[str]:
        """A new password first reaches every running node by reload, back to back.

        Nodes with different keys cannot hear each other, so every node is signalled first
        and only then is each awaited (a changed ha.cf is applied by a re-exec about two
        seconds after the signal, which is when the new key is read too): one node at a
        time would leave the first deaf to the others for longer than deadtime. Waiting
        for a restarted node to see peers that still use the old key would never end.
        Returns the nodes reloaded here.
        """
        rekey = [t for t in order if t.node.name in was_running
                 and "authkeys" in plans[t.node.name].changed_files]
        if not rekey:
            return set()
        marks = {}
        for target in rekey:
            plan = plans[target.node.name]
            files = ", ".join(f for f in plan.changed_files if f not in plan.deferred)
            self.say(target, f"reloading heartbeat ({files} re-read, resources kept; the new "
                             "password reaches every running node back to back)")
            marks[target.node.name] = apply.signal_reload(target.remote)
            self.applied[target.node.name] = "reload"
            self.results[target.node.name].steps["service"] = "reloaded"
        rewritten = [(t, marks[t.node.name]) for t in rekey
                     if "ha.cf" in plans[t.node.name].changed_files
                     and "ha.cf" not in plans[t.node.name].deferred]
        pending = self._await_reexecs(rewritten)
        for target in rekey:  # signalled back to back above: keys differ for a moment only
            plan = plans[target.node.name]
            peers = was_running - {target.node.name}
            self._settle(target, plan, peers, check_groups=True,
                         reexec_mark=pending.get(target.node.name))
        return {t.node.name for t in rekey}

    def _settle(self, target: Target, plan: HostPlan, peers: set[str],
                check_groups: bool, booting: bool = False,
                reexec_mark: str | None = None, start: Callable[[], str] | None = None
                ) -> None:
        """Wait until ``target`` is healthy (after a reload that changed ha.cf, first for
        heartbeat's re-exec: ``reexec_mark``; ``start``: heartbeat's (re)start, run first);
        else stop the rollout before the next host.

        The files are rolled back only when the new configuration is at fault: heartbeat
        does not run with it, or its journal blames it (converge.config_fault). A node that
        runs and is merely slow to see its peers keeps them: a rerun goes on from there.
        """
        try:
            if start is not None and (said := start()):
                self.say(target, said)
            if reexec_mark is not None:
                freed = apply.await_reexec(target.remote, reexec_mark)
                if freed:
                    self.say(target, freed)
            self.wait_healthy(target, peers, check_groups, booting)
        except RemoteError as exc:
            self.results[target.node.name].steps["service"] = "failed"
            self.say(target, f"FAILED: {exc}; the journal's last lines:")
            for line in apply.journal(target.remote).splitlines():
                self.out(f"[{target.host}]   journal: {line}")
            running = node_view(self.cluster, target.node.name, target.remote).heartbeat
            blame = config_fault([target], time.monotonic() - self.run.started)
            if running and not blame:
                raise RolloutError(
                    f"{target.host}: heartbeat runs with the new files but did not settle "
                    f"({exc}); nothing blames the configuration, so it was kept; rollout "
                    "stopped before the next host: rerun deploy to go on") from None
            roll_back(self.run)
            why = "heartbeat is not running with them" if not running else "; ".join(
                line for lines in blame.values() for line in lines)
            raise RolloutError(f"{target.host}: heartbeat did not come up healthy "
                               f"({exc}; {why}); previous files restored on every host, "
                               "rollout stopped before the next host") from None

    def _held_floating(self, plan: HostPlan) -> bool:
        """Did the host hold one of the cluster's floating IPs when its facts were read?"""
        return bool(set(self.cluster.floating_ips()) & plan.facts.ips())

    def _held_by(self, target: Target, held_at_start: bool = False) -> list[str]:
        """The groups ``target`` holds now. When it held a floating IP at the run's start
        (``held_at_start``) and now holds nothing while a group is held by no node, heartbeat
        is moving that group (a standby nobody asked for, ResourceManager's after a failed
        start among them): looked at again every 0.5 s, for at most 2 x deadtime + 5 s, so
        that the node is not restarted without a handover on the strength of one look."""
        node = target.node.name
        end = time.monotonic() + window(self.cluster)
        said = False
        while True:
            groups = snapshot(self.cluster, self.targets).groups
            mine = [g for g, holders in groups.items() if node in holders]
            if mine or not held_at_start or all(groups.values()) or time.monotonic() > end:
                if said:
                    self.say(target, f"holds {', '.join(mine) or 'nothing'} now (groups: "
                                     f"{holders_text(groups)})")
                return mine
            if not said:
                self.say(target, "held a floating IP at the start and holds nothing now, "
                                 f"with a group held by no node ({holders_text(groups)}): "
                                 f"looking again for up to {window(self.cluster):.0f}s "
                                 "before its restart")
                said = True
            time.sleep(0.5)

    def _hand_over(self, target: Target, groups: list[str], updated: list[Target]) -> None:
        """hb_standby on ``target``; when its groups do not land elsewhere, the updated peers
        are rolled back and ``target`` takes its groups back."""
        self.say(target, f"handing {', '.join(groups)} over to a peer before its restart")
        started = time.monotonic()

        def fault() -> list[str]:  # an updated peer's journal blames its new files
            found = config_fault(updated, time.monotonic() - started)
            return [f"{node}: {line}" for node, lines in found.items() for line in lines]

        try:
            hand_over(self.cluster, self.targets, target, groups,
                      lambda line: self.say(target, line), fault)
        except HbdeployError as exc:
            self.say(target, f"FAILED: {exc}")
            for peer in updated:
                self.results[peer.node.name].steps["service"] = "failed"
                self.say(peer, "the journal's last lines:")
                for line in apply.journal(peer.remote).splitlines():
                    self.out(f"[{peer.host}]   journal: {line}")
            roll_back(self.run)
            back = self._take_back(target, groups)
            raise RolloutError(
                f"the handover from {target.host} failed ({exc}): the updated peers "
                f"({', '.join(p.host for p in updated) or 'none'}) got their previous files "
                f"back, {target.host} was left unchanged and {back}; rollout stopped"
            ) from None
        self.say(target, "handover complete")

    def _take_back(self, target: Target, groups: list[str]) -> str:
        """``hb_takeover all`` on ``target`` after a failed handover, then a poll (at most
        2 x deadtime + 5 s) until it holds ``groups`` alone again; says how that went."""
        node = target.node.name
        target.remote.run(f"{HB_TAKEOVER} all", check=False, timeout=120)
        try:
            wait_placement(self.cluster, self.targets,
                           lambda held: holds_alone(held, node, groups),
                           window(self.cluster), f"{node} taking {', '.join(groups)} back")
        except HandoverError as exc:
            self.say(target, f"asked for its groups back (hb_takeover all): {exc}")
            return (f"was asked to take its groups back (hb_takeover all) but did not within "
                    f"{window(self.cluster):.0f}s: check `hbdeploy status`")
        self.say(target, f"took {', '.join(groups)} back (hb_takeover all)")
        return f"took {', '.join(groups)} back"

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

        last = [""]  # what was wrong at the last look, for the error

        def healthy() -> bool:
            view = node_view(self.cluster, target.node.name, target.remote)
            if not view.heartbeat:
                last[0] = f"heartbeat not answering cl_status (systemd: {view.unit or '?'})"
                return False
            if not all(view.peers.get(p) == "active" for p in peers):
                last[0] = "sees " + ", ".join(f"{p} {view.peers.get(p, '?')}"
                                              for p in peers_sorted)
                return False
            if check_groups:
                groups = snapshot(self.cluster, self.targets).groups
                last[0] = f"groups: {holders_text(groups)}"
                return all(len(groups[g]) == 1 for g in self.placed_before if g in groups)
            return True

        try:
            apply.wait_until(f"{target.host}: heartbeat up and peers "
                             f"{', '.join(peers_sorted) or '(none yet)'} active", healthy,
                             deadline)
        except RemoteError as exc:
            raise RemoteError(f"{exc} (last seen: {last[0]})") from None
        self.say(target, "heartbeat up" + (f", sees {', '.join(peers_sorted)} active"
                                           if peers_sorted else ""))

