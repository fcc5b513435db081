"""Deploy a cluster: match hosts to nodes, pre-flight all, then install, push, firewall and
supervision (prepare), restart one at a time (rollout.py), converge (converge.py), and roll
back (rollback.py) only when the new configuration is at fault. Usable without Fabric's
CLI: give it connections.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fabric import Connection

from . import apply, config, facts, firewall, supervision
from .converge import config_fault, converge, right_at_first_sight
from .errors import HbdeployError
from .model import Cluster
from .plan import HostPlan, plan_host, preflight
from .render import RenderedFile, mask_authkeys
from .rollback import roll_back
from .rollout import Rollout, RolloutError
from .status import parse_view
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
        self.started = time.monotonic()

    def say(self, target: Target, message: str) -> None:
        self.out(f"[{target.host}] {message}")

    # -- pre-flight ------------------------------------------------------------------------
    def gather(self, announce: bool = False) -> dict[str, HostPlan]:
        """Facts of every host (with its heartbeat view; ``announce``: each holder announces
        its floating IPs, facts.py), then every pre-flight problem at once, before any
        change."""
        outcomes = _parallel(_guard(lambda t: facts.gather(
            t.remote, facts.probe(self.cluster, t.node.name, announce))), self.targets)
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
        for target in self.targets:
            plan = plans[target.node.name]
            if not supervision.references(self.cluster, plan.facts.gateway):
                self.say(target, "warning: no `ping` address in the cluster file and no "
                                 "default gateway here: hbdeploy-guard cannot tell this node "
                                 "being cut off from its peers dying, and will not act")
        return plans

    # -- check mode ----------------------------------------------------------------------------
    def show(self, plans: dict[str, HostPlan]) -> None:
        """What each host would get, with unified diffs (authkeys masked); changes nothing."""
        for target in self.targets:
            plan = plans[target.node.name]
            if plan.install:
                self.say(target, f"would install {plan.packages}")
            for rendered in [*(plan.files[n] for n in plan.changed_files),
                             *(plan.supervision[n] for n in plan.changed_supervision)]:
                self.show_diff(target, rendered)
            if plan.firewall:
                wanted = firewall.rules(plan.firewall_backend, self.cluster, plan.node)
                self.say(target, f"would put {len(wanted)} firewall rules in place "
                                 f"({firewall.describe(plan.firewall_backend)}):")
                for line in wanted:
                    self.out(f"[{target.host}]   {line}")
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

    def show_diff(self, target: Target, rendered: RenderedFile) -> None:
        """A unified diff of the host's file against ``rendered`` (keys masked)."""
        _, old, _ = target.remote.run(f"cat {rendered.remote_path} 2>/dev/null || true")
        new = rendered.content
        if rendered.secret:
            old, new = mask_authkeys(old), mask_authkeys(new)
        diff = list(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            f"{rendered.remote_path} (on host)", f"{rendered.remote_path} (new)"))
        self.say(target, f"would write {rendered.remote_path} (mode {rendered.mode:04o})"
                 + ("" if diff else ": only its mode or owner differs"))
        for line in diff:
            self.out(f"[{target.host}]   {line.rstrip()}")

    # -- apply ------------------------------------------------------------------------------------
    def prepare(self, plans: dict[str, HostPlan]) -> list[str]:
        """Install, push and firewall every host in parallel; the failures' messages."""

        def one(target: Target) -> None:
            plan, result = plans[target.node.name], self.results[target.node.name]
            step = "install"
            try:
                if plan.install:
                    self.say(target, f"installing {plan.packages}")
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
                if plan.changed_supervision or plan.start_guard:
                    apply.supervise(target.remote, plan)
                    result.steps["service"] = "changed"
                    if plan.changed_supervision:
                        self.say(target, "supervision in place: heartbeat.service restarts "
                                         "on any exit but a stop; hbdeploy-guard watches for "
                                         "this node being cut off")
            except HbdeployError as exc:
                result.steps[step] = "failed"
                raise exc

        outcomes = _parallel(_guard(one), self.targets)
        return [error for _, error in outcomes if error]


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
                   guard: Callable[[dict[str, HostPlan]], None] | None = None) -> Recap:
    """Deploy ``cluster`` to ``connections``; raises DeployError when pre-flight fails.

    ``guard`` sees every plan after pre-flight and may refuse the run (DeployError).
    """
    if check:
        weak = config.weak_password(cluster)
        if weak:
            out(f"warning: {weak}")
    else:
        config.refuse_weak_password(cluster)  # before any host is touched
    targets = match_targets(cluster, connections)
    run = Deployment(cluster, targets, out, verbose)
    recap = Recap(list(run.results.values()))
    try:
        return _deploy(run, recap, check, guard)
    finally:
        recap.commands = {t.host: t.remote.commands for t in targets}


def _deploy(run: Deployment, recap: Recap, check: bool,
            guard: Callable[[dict[str, HostPlan]], None] | None) -> Recap:
    cluster, targets = run.cluster, run.targets
    plans = run.plans = run.gather(announce=not check)
    if guard:
        guard(plans)
    if check:
        run.show(plans)
        return recap
    if not any(plan.changes_anything for plan in plans.values()) and _already_right(run, recap):
        return recap  # one remote command per host: the facts probe
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
        return recap

    def blame() -> dict[str, list[str]]:
        return config_fault(targets, time.monotonic() - run.started)

    wrote = any(run.pushed.values())
    outcome = converge(cluster, targets, run.say, blame=blame if wrote else None)
    recap.actions = outcome.actions
    _record_holders(recap, run, outcome.holders)
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
