"""Rollback: the previous files back on every host a deploy wrote to, and heartbeat made to
read them again where it had read the new ones (reload or restart, as the run did)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import apply
from .remote import RemoteError

if TYPE_CHECKING:
    from .deploy import Deployment
    from .targets import Target


def roll_back(run: Deployment) -> None:
    """Put the previous files back on every host this run wrote to, and make heartbeat
    read them again where it had read the new ones (reload or restart, as it did)."""
    stopping = []
    for target in run.targets:
        name = target.node.name
        if not run.pushed[name]:
            continue
        restored, removed = apply.restore(target.remote, run.pushed[name], run.stamp)
        how = run.applied.get(name)
        if how:
            _cancel_pending_standby(run, target)
        if removed:  # a node that had no configuration before this run: nothing to run
            run.say(target, f"removed the new {', '.join(removed)} (there was none before)"
                    + (f", restored the previous {', '.join(restored)}" if restored else "")
                    + ("; stopping heartbeat" if how else ""))
            if how:
                stopping.append(target)
            continue
        run.say(target, f"restored the previous {', '.join(restored)}"
                 + {"reload": "; reloading", "restart": "; restarting"}.get(how or "", ""))
        try:
            if how == "reload":
                freed = apply.reload(target.remote, reexec="ha.cf" in restored)
                if freed:
                    run.say(target, freed)
            elif how == "restart":
                apply.restart(target.remote)
        except RemoteError as exc:
            run.say(target, f"heartbeat with the previous files failed too: {exc}")
    # Nodes that had no configuration served nothing before this run: stopped all at once.
    with ThreadPoolExecutor(max_workers=max(1, len(stopping))) as pool:
        list(pool.map(lambda t: t.remote.run("systemctl stop heartbeat.service", check=False,
                                             timeout=120), stopping))


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
