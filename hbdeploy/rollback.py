"""Rollback: the previous files back on every host a deploy wrote to, and heartbeat made to
read them again where it had read the new ones (reload or restart, as the run did)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import apply, nodelist
from .converge import repair_claims
from .facts import listed_by_running
from .layout import UNAPPLIED
from .remote import RemoteError

if TYPE_CHECKING:
    from .deploy import Deployment
    from .targets import Target


def roll_back(run: Deployment) -> None:
    """Put the previous files back on every host this run wrote to, and make heartbeat
    read them again where it had read the new ones (reload or restart, as it did). A node
    joining the cluster (heartbeat stopped, no running node listing it) that this run
    started with files it already had is stopped again (and disabled, when the run enabled
    it); a member whose heartbeat this run started again keeps running."""
    stopping = []
    joining = _joining(run)
    # A media change is undone as it was made: every node re-reads at once (rollout).
    switched = set(run.media_switch) if len(run.media_switch) > 1 else set()
    together: list[tuple[Target, bool]] = []
    for target in run.targets:
        name = target.node.name
        plan = run.plans.get(name)
        # Files an earlier run put in place and this run made heartbeat read (the earlier
        # run stopped before it did) go back to what heartbeat read before them.
        earlier = plan.unapplied if plan and run.applied.get(name) else []
        mine = [f for f in run.pushed[name] if f not in earlier]
        if not mine and not earlier:
            if run.applied.get(name) == "restart" and plan and name in joining:
                _cancel_pending_standby(run, target)
                run.say(target, "heartbeat was not running before this run: stopping it"
                        + (" (and disabling it, as it was)" if plan.enable else ""))
                stopping.append(target)
            continue
        restored, removed = apply.restore(target.remote, mine, run.stamp)
        if earlier and plan:
            more = apply.restore(target.remote, earlier, plan.facts.unapplied_stamp)
            restored, removed = restored + more[0], removed + more[1]
        how = run.applied.get(name)
        if how:
            _cancel_pending_standby(run, target)
        if removed:  # a node that had no configuration before this run: nothing to run
            run.say(target, f"removed the new {', '.join(removed)} (there was none before)"
                    + (f", restored the previous {', '.join(restored)}" if restored else "")
                    + ("; stopping heartbeat" if how else "")
                    + (" (and disabling it, as it was)"
                       if how and name in run.plans and run.plans[name].enable else ""))
            if how:
                stopping.append(target)
            continue
        run.say(target, f"restored the previous {', '.join(restored)}"
                 + {"reload": "; reloading", "restart": "; restarting"}.get(how or "", ""))
        if not how and plan and plan.facts.running:
            # never re-read: the record of files not re-read goes back to what it was
            try:
                apply.reset_unapplied(target.remote, plan.facts.unapplied_line
                                      if plan.facts.unapplied else "")
            except RemoteError as exc:
                run.say(target, f"could not reset {UNAPPLIED}: {exc}")
        if how == "reload" and name in switched:
            together.append((target, "ha.cf" in restored))
            continue
        try:
            if how == "reload":
                freed = apply.reload(target.remote, reexec="ha.cf" in restored)
                if freed:
                    run.say(target, freed)
            elif how == "restart":
                said = apply.restart(target.remote)
                if said:
                    run.say(target, said)
        except RemoteError as exc:
            run.say(target, f"heartbeat with the previous files failed too: {exc}")
    if together:
        _reload_together(run, together)
    # Nodes that had no configuration, or no heartbeat running, served nothing before this
    # run: stopped all at once, and disabled where this run enabled heartbeat.
    def stop(target: Target) -> None:
        plan = run.plans.get(target.node.name)
        verb = "disable --now" if plan and plan.enable else "stop"
        target.remote.run(f"systemctl {verb} heartbeat.service", check=False, timeout=120)

    with ThreadPoolExecutor(max_workers=max(1, len(stopping))) as pool:
        list(pool.map(stop, stopping))
    left = bool(run.introduced) or any(t.node.name in joining for t in stopping)
    _forget_introduced(run)
    if left:
        _repair_claims(run)


def _reload_together(run: Deployment, together: list[tuple[Target, bool]]) -> None:
    """The previous files re-read by every node of a media change at the same moment (the
    signals sent together, then each re-exec awaited): one at a time, the first re-read
    would hear no peer for as long as the next took, and at a short deadtime take their
    resources. ``together``: each node, and whether its ha.cf was restored."""
    run.out(f"reloading heartbeat on {', '.join(t.node.name for t, _ in together)} at once: "
            "the previous media (one at a time they would not hear each other)")

    def signal(item: tuple[Target, bool]) -> str | None:
        try:
            return apply.signal_reload(item[0].remote)
        except RemoteError as exc:
            run.say(item[0], f"heartbeat with the previous files failed too: {exc}")
            return None

    with ThreadPoolExecutor(max_workers=len(together)) as pool:
        marks = list(pool.map(signal, together))
    rereading = [(target, mark) for (target, reexec), mark in zip(together, marks, strict=True)
                 if mark is not None and reexec]
    for (target, _), outcome in zip(rereading, apply.await_reexecs(
            [(t.remote, mark) for t, mark in rereading]), strict=True):
        if isinstance(outcome, RemoteError):
            run.say(target, f"heartbeat with the previous files failed too: {outcome}")
        elif outcome:
            run.say(target, outcome)


def _joining(run: Deployment) -> set[str]:
    """Nodes whose heartbeat was not running when the run began and that no running node
    listed as a peer: not members yet."""
    listed = listed_by_running(run.cluster, {n: p.facts for n, p in run.plans.items()})
    return {name for name, plan in run.plans.items()
            if not plan.facts.running and name not in listed}


def _forget_introduced(run: Deployment) -> None:
    """The nodes this run added to the running nodes' lists (rollout: hb_addnode) are
    taken out again: the old ha.cf does not name them, but a node re-reading it takes the
    list of a peer that still has them (nodelist.py), so only hb_delnode removes them."""
    running = [t.remote for t in run.targets
               if t.node.name in run.plans and run.plans[t.node.name].facts.running]
    for node in run.introduced:
        try:
            nodelist.forget(run.cluster, running, node)
        except RemoteError as exc:
            run.out(f"could not take {node} out of the running nodes' node lists: {exc}")
            continue
        run.out(f"{node} taken out of the running nodes' node lists again (hb_delnode)")
    run.introduced = []


def _repair_claims(run: Deployment) -> None:
    """A joining node that came and went is, to heartbeat on the members, a dead node whose
    resources they now hold (converge.phantom_claims): where a member holding nothing
    believes so, it would take no failover over. Checked among the members as they were
    before the run (the previous files name no other node)."""
    members = [t for t in run.targets
               if t.node.name in run.plans and run.plans[t.node.name].facts.running]
    names = {t.node.name for t in members}
    cluster = dataclasses.replace(
        run.cluster, nodes=tuple(n for n in run.cluster.nodes if n.name in names),
        groups=tuple(g for g in run.cluster.groups if g.node in names))
    for problem in repair_claims(cluster, members, run.say):
        run.out(f"after the rollback: {problem}")


def _cancel_pending_standby(run: Deployment, target: Target) -> None:
    """ResourceManager's standby request 30 s after a failed start outlives heartbeat's
    stop and restart (apply.CANCEL_STANDBY): ended on every node rolled back, the ones
    stopped too (a later start of heartbeat there met it: a fresh-clone run of 2026-12-04,
    a standby exchange nobody asked for, wedged)."""
    try:
        if apply.cancel_pending_standby(target.remote):
            run.say(target, "cancelled the standby request heartbeat had scheduled 30 s after "
                            "the new files' failed start (ResourceManager's)")
    except RemoteError as exc:
        run.say(target, f"could not look for heartbeat's scheduled standby request: {exc}")
