"""Cluster-wide tasks under `fab -H a,b TASK`, which calls a task once per host.

Every target must be pre-flighted before any is changed, so a cluster task works in two
halves: the per-host calls only validate the cluster file (once) and enlist their
Connection — nothing connects yet — and the real work runs once, over all enlisted hosts,
in a post-task (Fabric runs post-tasks once, after every per-host call). Without -H the
post-task targets every configured node by its IP. The run's state is kept per Fabric
config object, which Fabric shares between the calls of one run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fabric import Connection
from invoke import Context, Exit, Task, task

from . import config
from .model import Cluster
from .targets import default_connections


@dataclass
class Enlisted:
    cluster: Cluster | None  # None for a task that reads no cluster file (import)
    options: dict[str, Any]
    connections: list[Connection] = field(default_factory=list)


_RUNS: dict[int, Enlisted] = {}


def enlist(c: Context, cluster_file: str | None, read_cluster: bool = True,
           **options: Any) -> None:
    """Record this host (when there is one) for the cluster-wide half of the run."""
    run = _RUNS.get(id(c.config))
    if run is None:
        run = _RUNS[id(c.config)] = Enlisted(
            config.load_cluster(cluster_file) if read_cluster else None, options)
    if isinstance(c, Connection):
        run.connections.append(c)


def take(c: Context, require_hosts: bool = True, spares: bool = False
         ) -> tuple[Cluster, list[Connection], dict[str, Any]]:
    """The cluster, the target connections (-H, else every node; ``spares``: and every
    spare) and the options (once)."""
    run = _RUNS.pop(id(c.config), None)
    if run is None or run.cluster is None:
        raise Exit("error: no host was enlisted for this run", code=1)
    connections = run.connections or (
        default_connections(run.cluster, config=c.config, spares=spares)
        if require_hosts else [])
    return run.cluster, connections, run.options


def take_hosts(c: Context) -> tuple[list[Connection], dict[str, Any]]:
    """The -H connections and the options of a task that reads no cluster file (once)."""
    run = _RUNS.pop(id(c.config), None)
    if run is None or not run.connections:
        raise Exit("error: give the hosts with -H (e.g. -H haproxy1,haproxy2)", code=2)
    return run.connections, run.options


def post_task(func: Callable[..., None]) -> Task:
    """Wrap the cluster-wide half so it runs once per run (never listed as a task)."""
    return task(func)
