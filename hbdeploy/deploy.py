"""Deploy a cluster: match hosts to nodes, pre-flight all, then install, push, firewall and
supervision (prepare), restart one at a time (rollout.py), converge (converge.py), and roll
back (rollback.py) only when the new configuration is at fault. Usable without Fabric's
CLI: give it connections.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from fabric import Connection

from . import (
    apply,
    config,
    equivalence,
    facts,
    firewall,
    lock,
    rekey,
    render,
    spares,
    supervision,
    sysctl,
)
from .cli import INTERRUPTED, raise_if_interrupted
from .converge import config_fault, converge, placement, right_at_first_sight
from .errors import HbdeployError
from .model import Cluster
from .plan import HostPlan, plan_host, preflight
from .render import RenderedFile, mask_authkeys
from .rollback import roll_back
from .rollout import Rollout, RolloutError
from .status import parse_view, snapshot, stranger_text
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
    actions: list[str] = field(default_factory=list)  # repairs converge made
    commands: dict[str, int] = field(default_factory=dict)  # host -> remote commands

    def table(self) -> str:
        head = f"{'HOST':<16} {'NODE':<12} " + " ".join(f"{s:<9}" for s in STEPS) + " HOLDS"
        rows = [head]
        for r in self.results:
            rows.append(f"{r.host:<16} {r.node:<12} "
                        + " ".join(f"{r.steps[s]:<9}" for s in STEPS)
                        + f" {' '.join(r.holds) or '-'}")
        changed = [r.host for r in self.results if "changed" in r.steps.values()]
        failed = [r.host for r in self.results if "failed" in r.steps.values()]
        rows += [f"repaired: {action}" for action in self.actions]
        if failed:
            rows.append(f"failed: {', '.join(failed)}")
        rows.append(f"changed: {', '.join(changed)}" if changed
                    else f"unchanged: nothing to do on {len(self.results)} host(s)")
        if self.commands:
            rows.append("remote commands: " + ", ".join(f"{host} {n}" for host, n
                                                         in self.commands.items()))
        return "\n".join(rows)


def _parallel(func, items, cancel: threading.Event | None = None, meanwhile=None):
    """``func`` over ``items`` in threads (and ``meanwhile()`` in this one while they
    run). On an interrupt (Ctrl-C, SIGTERM) ``cancel`` is set, so the workers stop at
    their next step, and their current step ends first."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(items))))
    try:
        results = pool.map(func, items)
        if meanwhile is not None:
            meanwhile()
        done = list(results)
        raise_if_interrupted()  # its KeyboardInterrupt may have been lost on the way
        return done
    except BaseException:
        if cancel is not None:
            cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Cancelled(HbdeployError):
    """The run was interrupted; a worker stopped before its next step."""


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
                 verbose: bool = False, command: str = "deploy",
                 break_lock: bool = False, spare_targets: Sequence[Target] = ()) -> None:
        self.cluster = cluster
        self.targets = targets
        self.spare_targets = list(spare_targets)  # prepared as spares (spares.py)
        self.spare_plans: dict[str, spares.SparePlan] = {}
        self.command = command
        self.break_lock = break_lock
        self.cancelled = threading.Event()
        lock = threading.Lock()

        def locked_out(line: str) -> None:  # hosts work in parallel: one line at a time
            with lock:
                out(line)

        self.out = locked_out
        self.verbose = verbose
        self.results = {t.node.name: HostResult(t.host, t.node.name)
                        for t in [*targets, *self.spare_targets]}
        self.stamp = time.strftime("%Y%m%dT%H%M%S")
        self.plans: dict[str, HostPlan] = {}
        self.pushed: dict[str, list[str]] = {t.node.name: [] for t in targets}
        self.staged: dict[str, set[str]] = {t.node.name: set() for t in targets}  # not in place
        self.applied: dict[str, str] = {}  # node -> "reload" | "restart" done in this run
        self.introduced: list[str] = []  # nodes hb_addnode'd on the running nodes (nodelist)
        self.rotation: list[rekey.Pass] = []  # the password's passes (rekey.py), if any
        self.media_switch: list[str] = []  # running nodes that re-read new media at once
        self.started = time.monotonic()

    def say(self, target: Target, message: str) -> None:
        self.out(f"[{target.host}] {message}")

    # -- pre-flight ------------------------------------------------------------------------
    def gather(self, announce: bool = False, check: bool = False) -> dict[str, HostPlan]:
        """Facts of every host (with its heartbeat view; ``announce``: each holder announces
        its floating IPs, facts.py), then every pre-flight problem at once, before any
        change."""
        connected = threading.Semaphore(0)

        def probe(target: Target) -> facts.HostFacts:
            try:
                target.remote.open()
            finally:
                connected.release()
            return facts.gather(target.remote,
                                facts.probe(self.cluster, target.node.name, announce))

        def warm() -> None:
            # The templates are compiled (Jinja2 imported, about 35 ms of CPU) once every
            # connection is up, while the probes run on the hosts: compiled meanwhile from the
            # start, they held up the SSH handshakes (the GIL, and the lab's 2 cores), 40 ms
            # more than compiling them afterwards (docs/performance.md).
            for _ in self.targets:
                connected.acquire()
            render.warm()

        outcomes = _parallel(_guard(probe), self.targets, meanwhile=warm)
        problems, plans, found = [], {}, {}
        for target, (host_facts, error) in zip(self.targets, outcomes, strict=True):
            if error:
                problems.append(error)
                continue
            found[target.node.name] = host_facts
            problems += preflight(target.host, target.node, host_facts, self.cluster)
            owner = lock.held_by_other(host_facts.lock, host_facts.now)
            if owner and not self.break_lock and not check:  # --check changes nothing
                problems.append(lock.refusal(target.host, owner, host_facts.now))
            elif owner and check:
                self.say(target, "note: another hbdeploy run holds the lock: "
                                 + owner.describe(host_facts.now))
            if self.command not in ("decommission", "replace"):  # they take such a node out
                problems += self._live_strangers(target, host_facts)
        try:
            problems += self._plan_rotation(found)
        except HbdeployError as exc:
            problems.append(str(exc))
        problems += self._gather_spares(check)
        for target in self.targets:
            if target.node.name in found:
                plans[target.node.name] = plan_host(target.host, target.node,
                                                    found[target.node.name], self.cluster)
        if len(plans) == len(self.targets):
            problems += self._plan_media(plans, found)
        if problems:
            raise DeployError("pre-flight failed, no host was changed:\n  "
                              + "\n  ".join(problems))
        for target in self.targets:
            plan = plans[target.node.name]
            if self.cluster.nonlocal_bind and plan.facts.nonlocal_bind != "1":
                self.say(target, f"nonlocal_bind: {sysctl.KEY} is "
                                 f"{sysctl.describe(plan.facts.nonlocal_bind)} here; a "
                                 "service cannot bind the floating IP before this node holds "
                                 "it until the deploy sets it")
            if not supervision.references(self.cluster, plan.facts.gateway):
                self.say(target, "warning: no `ping` address in the cluster file and no "
                                 "default gateway here: hbdeploy-guard cannot tell this node "
                                 "being cut off from its peers dying, and will not act")
        return plans

    def _gather_spares(self, check: bool) -> list[str]:
        """The spares' facts (one probe each) and plans; their pre-flight problems."""
        outcomes = _parallel(_guard(lambda t: facts.gather(t.remote, spares.probe(
            self.cluster))), self.spare_targets)
        problems = []
        for target, (found, error) in zip(self.spare_targets, outcomes, strict=True):
            if error:
                problems.append(error)
                continue
            problems += spares.preflight_spare(target.host, target.node, found, self.cluster)
            owner = lock.held_by_other(found.lock, found.now)
            if owner and not self.break_lock and not check:
                problems.append(lock.refusal(target.host, owner, found.now))
            plan = spares.plan_spare(target.host, target.node, found)
            self.spare_plans[target.node.name] = plan
            self.results[target.node.name].steps.update(firewall="skipped", service="spare")
            if not plan.install:  # a spare still to install is verified after it
                problems += spares.unready(target.host, target.node, found, self.cluster,
                                           state=False)
        return problems

    def prepare_spares(self) -> list[str]:
        """Each spare brought to its state and verified, in parallel; the problems."""
        def one(target: Target) -> list[str]:
            plan, result = self.spare_plans[target.node.name], self.results[target.node.name]
            self._next(target, "install")
            result.steps.update(install="changed" if plan.install else "ok",
                                files="changed" if plan.member_files else "ok",
                                firewall="skipped", service="spare")
            found = spares.prepare(self.cluster, target, plan, self.stamp,
                                   lambda line: self.say(target, line))
            if found:
                result.steps["service"] = "failed"
            return found

        todo = [t for t in self.spare_targets if self.spare_plans[t.node.name].changes_anything]
        problems = []
        for found, error in _parallel(_guard(one), todo, self.cancelled):
            problems += [error] if error else found
        return problems

    def _plan_media(self, plans: dict[str, HostPlan], found: dict[str, facts.HostFacts]
                    ) -> list[str]:
        """A change of heartbeat's media (udpport, mode, interface, multicast group:
        equivalence.hears_across) on running nodes: one node at a time, the one re-read
        would not hear the others, and after deadtime each would take the other's
        resources (the lab: a new udpport left the floating IP on both nodes). So every
        running node re-reads ha.cf at the same moment (``self.media_switch``; the rollout
        signals them together, and heartbeat's re-exec takes well under deadtime). The
        problems that forbid it: a running node not in this run, or one that needs a
        restart for other changes in the same run."""
        switching = sorted(
            name for name, plan in plans.items() if plan.facts.running
            and "ha.cf" in plan.changed_files and "ha.cf" in plan.facts.texts
            and not equivalence.hears_across(plan.facts.texts["ha.cf"],
                                             plan.files["ha.cf"].content))
        running = sorted(name for name, plan in plans.items() if plan.facts.running)
        if not switching:
            return []
        problems = []
        outside = self._running_outside(running, found)  # a lone target's peers too
        if outside:
            problems.append(f"heartbeat's media change ({', '.join(switching)}: udpport, "
                            f"mode, interface or multicast group), and {', '.join(outside)} "
                            "runs heartbeat but is not in this run: it would not hear the "
                            "others; give every running node (-H)")
        if len(running) < 2:  # a lone running node re-reads alone, with whatever restart
            return problems
        restarting = sorted(n for n in running if plans[n].restart and not plans[n].reload_only)
        if restarting:
            problems.append(f"heartbeat's media change ({', '.join(switching)}) and a change "
                            f"that restarts heartbeat on {', '.join(restarting)}, in one run: "
                            "every running node must re-read the new media at once; deploy "
                            "the media change alone first, then the rest")
        self.media_switch = [n for n in running if plans[n].reload_only]
        for name in self.media_switch if self.cluster.firewall.enabled else ():
            plan = plans[name]
            if plan.firewall_backend and "ha.cf" in plan.facts.texts:
                wide = firewall.script(plan.firewall_backend, self.cluster, plan.node,
                                       firewall.heard_now(self.cluster, plan.node,
                                                          plan.facts.texts["ha.cf"]))
                if wide != plan.firewall_script:
                    plan.firewall_wide, plan.firewall = wide, True
        return problems

    def _running_outside(self, running: Iterable[str], found: dict[str, facts.HostFacts]
                         ) -> list[str]:
        """Nodes that a running node of this run sees active but that are not in it (a
        change every running node must take at once would leave them behind)."""
        given = {t.node.name for t in self.targets}
        return sorted({peer for name in running for peer, state in facts.peer_states(
            self.cluster, name, found[name]).items() if state == "active" and peer not in given})

    def _live_strangers(self, target: Target, found: facts.HostFacts) -> list[str]:
        """Nodes heartbeat on ``target`` lists as live members that the cluster file does
        not name (status.NodeView.strangers): a member taken out of the file without
        `hbdeploy decommission`. A deploy would leave it a member (heartbeat keeps a node
        hb_addnode added), and once it stops, the survivors take it for a dead member
        whose (no) resources they hold, and would not take over (converge.phantom_claims).
        A dead one is dropped by converge (hb_delnode)."""
        view = parse_view(self.cluster, target.node.name, target.host, "\n".join(found.view))
        return [f"{target.host}: {stranger_text(target.node.name, peer, state)}"
                for peer, state in sorted(view.strangers.items()) if state != "dead"]

    def _plan_rotation(self, found: dict[str, facts.HostFacts]) -> list[str]:
        """The key index the password has or gets (rekey.choose_index: the cluster is
        rendered with it), and the passes a password change needs on the running nodes
        (``self.rotation``); the problems that forbid it."""
        rings = {name: f.keyring for name, f in found.items() if f.keyring}
        index = rekey.choose_index(self.cluster, rings.values())
        if index != self.cluster.auth_index:
            self.cluster = replace(self.cluster, auth_index=index)
        running = {name: rings.get(name) or rekey.KeyRing("", {})
                   for name, f in found.items() if f.running}
        if len(running) < 2:  # no running peer in this run to stay in touch with...
            lone = next(iter(running.items()), None)
            if lone and not lone[1].is_final(index, *rekey.wanted(self.cluster)):
                outside = self._running_outside(running, found)  # ...nor outside it
                if outside:
                    return [f"the password changes, and {', '.join(outside)} runs heartbeat "
                            f"but is not in this run: {lone[0]} alone would take the new key "
                            "and be cut off from it; give every running node (-H)"]
            return []
        self.rotation = rekey.passes(self.cluster, index, running)
        if not self.rotation:
            return []
        outside = self._running_outside(running, found)
        if outside:
            return [f"the password changes, and {', '.join(outside)} runs heartbeat but is "
                    "not in this run: it would not get the new key and be cut off from the "
                    "others; give every running node (-H)"]
        return []

    def rotate(self, plans: dict[str, HostPlan]) -> None:
        """The password rotation (rekey.py) on the running nodes, before anything else
        changes; their authkeys is then as rendered, so the rollout does not touch it."""
        if not self.rotation:
            return
        by_name = {t.node.name: t for t in self.targets}
        rekey.rotate(
            self.cluster, self.cluster.auth_index, self.rotation,
            {n: by_name[n].remote for n in by_name},
            {n: plans[n].files["authkeys"].content for n in plans}, self.stamp,
            lambda node, line: self.say(by_name[node], line), self.interrupted)
        for name in {n for step in self.rotation for n in step.nodes}:
            plan = plans[name]
            for kept in (plan.changed_files, plan.cosmetic_files):
                if "authkeys" in kept:
                    kept.remove("authkeys")
            self.results[name].steps["files"] = "changed"
            self.say(by_name[name], "password rotated: every running node signs with the new "
                                    "key and knows no other (heartbeat re-read authkeys; no "
                                    "reload or restart)")

    # -- check mode ----------------------------------------------------------------------------
    def show(self, plans: dict[str, HostPlan]) -> None:
        """What each host would get, with unified diffs (authkeys masked); changes nothing."""
        if self.rotation:
            self.out("would rotate the password on the running nodes, each pass on all of "
                     "them before the next (heartbeat re-reads authkeys each time):")
            for number, step in enumerate(self.rotation, 1):
                self.out(f"  {number}. {step.says}: {', '.join(step.nodes)}")
        self.note_unapplied(plans)
        for target in self.targets:
            plan = plans[target.node.name]
            if plan.install:
                self.say(target, f"would install {plan.packages}")
            for rendered in [*(plan.files[n] for n in plan.written),
                             *(plan.supervision[n] for n in plan.changed_supervision)]:
                self.show_diff(target, rendered, not rendered.path
                               and rendered.name in plan.cosmetic_files)
            if plan.firewall:
                wanted = firewall.rules(plan.firewall_backend, self.cluster, plan.node)
                self.say(target, f"would put {len(wanted)} firewall rules in place "
                                 f"({firewall.describe(plan.firewall_backend)}):")
                for line in wanted:
                    self.out(f"[{target.host}]   {line}")
                if plan.firewall_wide:
                    self.say(target, "  (a media change: heartbeat's present media stay let in "
                                     "beside these until every node has re-read ha.cf)")
            if plan.sysctl == "write":
                self.say(target, f"would set {sysctl.KEY} = 1 (nonlocal_bind; "
                                 f"{sysctl.PATH})")
            elif plan.sysctl == "remove":
                self.say(target, f"would remove {sysctl.PATH} (nonlocal_bind is off)")
            if plan.enable:
                self.say(target, "would enable heartbeat at boot")
            if plan.start_guard:
                self.say(target, "would (re)start hbdeploy-guard")
            if plan.reload_only:
                self.say(target, "would reload heartbeat (resources kept)")
            elif plan.restart:
                self.say(target, "would start heartbeat" if not plan.facts.running
                         else "would restart heartbeat")
            if not plan.changes_anything:
                self.say(target, "up to date: nothing to do")
        for target in self.spare_targets:
            spare = self.spare_plans[target.node.name]
            if spare.install:
                self.say(target, "would install heartbeat and net-tools (a spare)")
            if spare.supervision:
                self.say(target, "would remove hbdeploy's supervision (a spare runs no "
                                 "heartbeat)")
            if spare.mask:
                self.say(target, "would mask heartbeat.service (a spare: it cannot start)")
            if spare.member_files:
                self.say(target, f"would move {', '.join(spare.member_files)} aside (a "
                                 "spare holds no member files)")
            if not spare.changes_anything:
                self.say(target, "spare up to date: nothing to do")

    def note_unapplied(self, plans: dict[str, HostPlan]) -> None:
        """Say which files an earlier run put in place that heartbeat has not re-read."""
        for target in self.targets:
            unapplied = plans[target.node.name].unapplied
            if unapplied:
                self.say(target, f"{', '.join(unapplied)} in place but not re-read by "
                                 "heartbeat yet (an earlier run stopped before it reloaded "
                                 "or restarted heartbeat): this run does")

    def show_diff(self, target: Target, rendered: RenderedFile, cosmetic: bool = False
                  ) -> None:
        """A unified diff of the host's file against ``rendered`` (keys masked)."""
        _, old, _ = target.remote.run(f"cat {rendered.remote_path} 2>/dev/null || true",
                                         idempotent=True)
        new = rendered.content
        if rendered.secret:
            old, new = mask_authkeys(old), mask_authkeys(new)
        diff = list(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            f"{rendered.remote_path} (on host)", f"{rendered.remote_path} (new)"))
        self.say(target, f"would write {rendered.remote_path} (mode {rendered.mode:04o})"
                 + ("" if diff else ": only its mode or owner differs")
                 + (" — comments, spacing or mode only: heartbeat would not notice, and is "
                    "not reloaded for it" if cosmetic else ""))
        for line in diff:
            self.out(f"[{target.host}]   {line.rstrip()}")

    # -- apply ------------------------------------------------------------------------------------
    def ready(self, plans: dict[str, HostPlan]) -> list[str]:
        """Every host that installs can install (apply.ready_to_install), checked on all
        of them before any is changed; the problems."""
        installing = [t for t in self.targets if plans[t.node.name].install]
        outcomes = _parallel(_guard(lambda t: apply.ready_to_install(
            t.remote, plans[t.node.name])), installing, self.cancelled)
        errors = [error for _, error in outcomes if error]
        for target, (_, error) in zip(installing, outcomes, strict=True):
            if error:
                self.results[target.node.name].steps["install"] = "failed"
        return errors

    def prepare(self, plans: dict[str, HostPlan]) -> list[str]:
        """Install and stage the files on every host in parallel; then, only when that
        worked everywhere, put the files in place, the firewall rules and the supervision.
        A host that cannot take its files (a full disk) thus leaves every host's files as
        they were (what was staged is removed by deploy_cluster's ``finally``). The
        failures' messages."""

        def first(target: Target) -> None:
            plan, result = plans[target.node.name], self.results[target.node.name]
            step = "install"
            try:
                self._next(target, "install")
                if plan.install:
                    self.say(target, f"installing {plan.packages}")
                    note = apply.install(target.remote, plan)
                    result.steps["install"] = "changed"
                    for line in note.splitlines():
                        if self.verbose or line.startswith("disabled pacemaker"):
                            self.say(target, line)
                step = "files"
                self._next(target, "files")
                apply.stage(target.remote, plan, plan.written)
                self.staged[target.node.name] = set(plan.written)
            except HbdeployError:
                result.steps[step] = "failed"
                raise

        errors = [e for _, e in _parallel(_guard(first), self.targets, self.cancelled) if e]
        if errors:
            return [*errors, "no file was written on any host"]

        def second(target: Target) -> None:
            plan, result = plans[target.node.name], self.results[target.node.name]
            step = "files"
            try:
                self._next(target, "files")
                now = [f for f in plan.written if f not in plan.deferred]
                if now:
                    apply.commit(target.remote, now, self.stamp,
                                 [f for f in now if f in plan.changed_files])
                    self.staged[target.node.name] -= set(now)
                    self.pushed[target.node.name] += now
                    cosmetic = [f for f in now if f in plan.cosmetic_files]
                    which = "" if cosmetic == now else f"{', '.join(cosmetic)}: "
                    self.say(target, f"wrote {', '.join(now)}" + (
                        f" ({which}comments, spacing or mode only: heartbeat is not reloaded "
                        "for that)" if cosmetic else ""))
                if now:
                    result.steps["files"] = "changed"
                elif plan.written:
                    result.steps["files"] = "staged"  # written at its restart (rollout)
                step = "firewall"
                self._next(target, "firewall")
                if not self.cluster.firewall.enabled:
                    result.steps["firewall"] = "skipped"
                elif plan.firewall:
                    apply.apply_firewall(target.remote, plan,
                                         plan.firewall_wide or plan.firewall_script)
                    result.steps["firewall"] = "changed"
                    self.say(target, "firewall rules in place "
                                     f"({firewall.describe(plan.firewall_backend)})" + (
                                         ", heartbeat's present media still let in until "
                                         "every node has re-read ha.cf"
                                         if plan.firewall_wide else ""))
                if plan.sysctl:
                    apply.apply_sysctl(target.remote, plan)
                    self.say(target, f"{sysctl.KEY} = 1 in force (nonlocal_bind; "
                                     f"{sysctl.PATH})" if plan.sysctl == "write" else
                             f"removed {sysctl.PATH} (nonlocal_bind is off)")
                step = "service"
                self._next(target, "service")
                if plan.enable:
                    apply.enable(target.remote)
                    result.steps["service"] = "changed"
                if plan.changed_supervision or plan.start_guard:
                    apply.supervise(target.remote, plan)
                    result.steps["service"] = "changed"
                    if plan.changed_supervision:
                        self.say(target, "supervision in place: heartbeat.service restarts "
                                         "on any exit but a stop; hbdeploy-guard watches for "
                                         "this node being cut off")
            except HbdeployError:
                result.steps[step] = "failed"
                raise

        outcomes = _parallel(_guard(second), self.targets, self.cancelled)
        return [error for _, error in outcomes if error]

    def narrow_firewalls(self) -> list[str]:
        """Once the cluster is whole on a media change: each node's firewall without the
        media every node has left (apply_firewall let them in beside the new). Until then,
        and when the run stops or is rolled back before this, both stay open: the next
        deploy narrows them. The failures' messages."""
        wide = [t for t in self.targets if self.plans[t.node.name].firewall_wide]

        def narrow(target: Target) -> None:
            apply.narrow_firewall(target.remote, self.plans[target.node.name])
            self.say(target, "firewall: heartbeat's previous media no longer let in (every "
                             "node reads the new ha.cf)")

        errors = [e for _, e in _parallel(_guard(narrow), wide) if e]
        return [*errors, "heartbeat's previous media are still let in there; the next "
                         "deploy takes them out"] if errors else []

    def interrupted(self) -> bool:
        """Whether the run was interrupted (``cancelled``, or an interrupt whose
        KeyboardInterrupt Python dropped: cli.INTERRUPTED)."""
        return self.cancelled.is_set() or INTERRUPTED.is_set()

    def _next(self, target: Target, step: str) -> None:
        """Cancelled when the run was interrupted: no new step starts on any host."""
        if self.interrupted():
            raise Cancelled(f"{target.host}: interrupted before {step}")


def _already_right(run: Deployment, recap: Recap) -> bool:
    """Nothing to change: is the cluster as it should be, by the facts probe alone? Then
    the recap is complete (the probe has announced the holders' floating IPs)."""
    views = [parse_view(run.cluster, t.node.name, t.remote.label,
                        "\n".join(run.plans[t.node.name].facts.view)) for t in run.targets]
    answers = {name: plan.facts.answers for name, plan in run.plans.items()}
    holders = right_at_first_sight(run.cluster, run.targets, views, answers)
    if holders is None:
        return False
    for target in run.targets:
        announced = run.plans[target.node.name].facts.announced
        if announced:
            run.say(target, f"announced {', '.join(announced)} (gratuitous ARP)")
    _record_holders(recap, run, holders)
    return True


def _record_holders(recap: Recap, run: Deployment, holders: dict[str, list[str]]) -> None:
    for result in run.results.values():
        result.holds = sorted(ip for ip, held in holders.items() if held == [result.node])


def deploy_cluster(cluster: Cluster, connections: Sequence[Connection], *, check: bool = False,
                   out: Output = print, verbose: bool = False,
                   guard: Callable[[dict[str, HostPlan]], None] | None = None,
                   command: str = "deploy", break_lock: bool = False) -> Recap:
    """Deploy ``cluster`` to ``connections``; raises DeployError when pre-flight fails.

    ``guard`` sees every plan after pre-flight and may refuse the run (DeployError). A run
    that changes anything holds the run lock (lock.py) on every host from then on;
    ``break_lock`` takes it from another run. ``command`` names this run in the lock.
    """
    if len(cluster.nodes) > 2:
        out(config.warnings(cluster)[0])  # more than two members: heartbeat splits
    if check:
        weak = config.weak_password(cluster)
        if weak:
            out(f"warning: {weak}")
    else:
        config.refuse_weak_password(cluster)  # before any host is touched
    spare_targets, member_connections = spares.split(cluster, connections)
    targets = match_targets(cluster, member_connections)
    run = Deployment(cluster, targets, out, verbose, command, break_lock, spare_targets)
    recap = Recap(list(run.results.values()))
    try:
        return _deploy(run, recap, check, guard)
    finally:
        recap.commands = {t.host: t.remote.commands for t in [*targets, *spare_targets]}


def _deploy(run: Deployment, recap: Recap, check: bool,
            guard: Callable[[dict[str, HostPlan]], None] | None) -> Recap:
    targets = run.targets
    plans = run.plans = run.gather(announce=not check, check=check)
    if guard:
        guard(plans)
    if check:
        run.show(plans)
        return recap
    every = [*plans.values(), *run.spare_plans.values()]
    breaking = run.break_lock and any(lock.held_by_other(p.facts.lock, p.facts.now)
                                      for p in every)
    if (not breaking and not any(plan.changes_anything for plan in every)
            and (not targets or _already_right(run, recap))):
        return recap  # one remote command per host: the facts probe
    with lock.holding([t.remote for t in [*targets, *run.spare_targets]], run.command,
                      break_lock=run.break_lock, out=run.out):
        try:
            return _change(run, recap, plans)
        finally:  # an interrupted or failed run leaves no staged copy behind
            left = [t for t in targets if run.staged[t.node.name]]
            if left:
                _parallel(lambda t: apply.discard(t.remote, sorted(run.staged[t.node.name])),
                          left)
            # The table says what is in place: files staged for a restart that never came
            # (a holder whose handover failed) were removed, the old ones kept.
            for target in left:
                result = run.results[target.node.name]
                if result.steps["files"] == "staged":
                    result.steps["files"] = "unchanged"


def _change(run: Deployment, recap: Recap, plans: dict[str, HostPlan]) -> Recap:
    """Install, push, firewall, roll out, converge (and roll back when at fault); then
    the spares."""
    spare_problems = run.prepare_spares() if run.spare_targets else []
    recap.messages += spare_problems
    recap.failed = bool(spare_problems)
    if not run.targets:
        return recap
    cluster, targets = run.cluster, run.targets
    run.note_unapplied(plans)
    errors = run.ready(plans)
    if errors:
        recap.failed = True
        recap.messages += [*errors, "nothing was installed or written on any host"]
        return recap
    try:
        run.rotate(plans)
    except rekey.RotationError as exc:
        recap.failed = True
        recap.messages.append(str(exc))
        return recap
    errors = run.prepare(plans)
    if errors:
        recap.failed = True
        recap.messages += errors
        return recap
    try:
        Rollout(run).restart_all(plans)
    except RolloutError as exc:
        recap.failed = True
        recap.messages.append(str(exc))
        # who holds what once the rollout stopped: the table's HOLDS, as after converge
        _record_holders(recap, run, placement(cluster, snapshot(cluster, targets).nodes))
        return recap

    def blame() -> dict[str, list[str]]:
        return config_fault(targets, time.monotonic() - run.started)

    wrote = any(run.pushed.values())
    outcome = converge(cluster, targets, run.say, blame=blame if wrote else None)
    recap.actions = outcome.actions
    _record_holders(recap, run, outcome.holders)
    if not outcome.problems and (narrowing := run.narrow_firewalls()):
        recap.failed = True
        recap.messages += narrowing
    if outcome.problems:
        recap.failed = True
        recap.messages += outcome.problems
        if wrote:
            faults = outcome.blame or blame()
            if faults:
                # The new configuration is at fault: put the previous one back.
                for node, lines in faults.items():
                    for line in lines:
                        run.out(f"[{node}]   journal: {line}")
                roll_back(run)
                recap.messages.append("the new configuration did not come up (the journal "
                                      "lines above): previous files restored on every host "
                                      "written to (on a host that had none, the new ones "
                                      "removed and heartbeat stopped)")
            else:
                recap.messages.append("heartbeat accepted the new configuration and nothing "
                                      "in its journal blames it, so it was kept (no "
                                      "rollback); rerun deploy once the problems above are "
                                      "solved")
    return recap
