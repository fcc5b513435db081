"""One call from a cluster file (found or named) to a validated Cluster."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import secret, source, supervision, validate
from .errors import ConfigError, Problem
from .model import Cluster, Duration


def load_cluster(explicit: str | os.PathLike[str] | None = None,
                 environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Cluster:
    """Find, read and validate the cluster file; ConfigError lists every problem."""
    environ = os.environ if environ is None else environ
    path = source.discover(explicit, environ, cwd)
    return validate.load(source.read(path), environ)


# Measured in the lab, examples/lab.yml (keepalive 1, deadtime 5), probe every 50 ms:
# unanswered after a healed 9 s cut of the holder (docs/operations.md, "Partitions").
HEAL_UNGUARDED = "20-21 s"  # heartbeat alone, 3 runs
HEAL_GUARDED = "0.2 s (median of 10, at most 0.25 s)"
# Cuts that healed just after deadtime while the guard could only act on heartbeat's
# verdict: heartbeat's split-brain restart (3 runs by hand, docs/operations.md).
HEAL_IN_WINDOW = "unanswered for up to 10.7 s, or held by both nodes"
LONG_DEADTIME_MS = 15000


def warnings(cluster: Cluster) -> list[str]:
    """Valid but risky choices, said out loud."""
    found = []
    if len(cluster.nodes) > 2:
        found.append(
            f"warning: {len(cluster.nodes)} nodes: heartbeat's haresources resource manager "
            "is built for two; with three, every cut of the holder in the lab (20 of 20) "
            "put the floating IP on both spares at once for about 6 s, and standby/takeover "
            "are refused (docs/operations.md, \"Three members: why not\"); keep two members "
            "and list the others under spares: (`hbdeploy replace DEAD --with SPARE`)")
    if not cluster.uses_ipfail:
        found.append(
            "warning: no `ping` address: hbdeploy-guard, which takes a node cut off from "
            "its peers out of the cluster until its network is back, falls back to each "
            "node's default gateway; a node with neither gets no guard, and there a healed "
            f"cut left the floating IP unanswered {HEAL_UNGUARDED} in the lab instead of "
            f"{HEAL_GUARDED} (docs/operations.md, \"Partitions\")")
    weak = weak_password(cluster)
    if weak:
        found.append(f"warning: {weak}")
    t = cluster.timings
    if supervision.early_ms(cluster) == 0:
        found.append(
            f"warning: deadtime {t.deadtime} leaves hbdeploy-guard no time to take a cut-off "
            f"node out before its peers declare it dead (that needs deadtime of at least "
            f"keepalive + 3 s, here {Duration(t.keepalive.ms + 3000)}): a cut that heals just "
            f"after deadtime meets heartbeat's split-brain restart; in the lab that left the "
            f"floating IP {HEAL_IN_WINDOW} (docs/operations.md, \"Partitions\")")
    if t.deadtime.ms > LONG_DEADTIME_MS:
        found.append(
            f"warning: deadtime {t.deadtime}: a failover leaves the floating IP unanswered that "
            f"long (measured in the lab after a cut: deadtime - 0.7 s to deadtime + 0.3 s); "
            f"the default is 5s")
    return found


def weak_password(cluster: Cluster) -> str | None:
    """What is weak about the cluster's password (a warning in `check`; deploy refuses it
    unless the file says ``allow_weak_password: true``), or None."""
    why = secret.weakness(cluster.password)
    if why is None:
        return None
    return (f"password: weak, {why}; anyone on the heartbeat network who guesses it can take "
            "the floating IPs: use at least 16 random characters (`hbdeploy password.generate "
            "FILE`, then password_file: FILE)"
            + ("; allowed by allow_weak_password" if cluster.allow_weak_password else
               ", or set allow_weak_password: true to deploy it anyway"))


def refuse_weak_password(cluster: Cluster) -> None:
    """Raise ConfigError when the password is weak and not explicitly allowed."""
    weak = weak_password(cluster)
    if weak and not cluster.allow_weak_password:
        raise ConfigError([Problem("", weak)])


def summary(cluster: Cluster) -> str:
    """A short human summary: nodes, resource groups, media, timings."""
    t = cluster.timings
    media = cluster.media.mode
    if media == "mcast":
        media += f" {cluster.media.mcast_group} ttl {cluster.media.mcast_ttl}"
    lines = [
        f"cluster file: {cluster.source}",
        "nodes: " + ", ".join(f"{n.name} ({n.ip} on {n.interface})" for n in cluster.nodes),
        *(["spares (prepared, not members): " + ", ".join(
            f"{n.name} ({n.ip} on {n.interface})" for n in cluster.spares)]
          if cluster.spares else []),
        "resource groups:",
        *(f"  {g.node}: {' '.join(g.resources)}" for g in cluster.groups),
        f"media: {media} on udp port {cluster.udpport}",
        f"timings: keepalive {t.keepalive}, warntime {t.warntime}, deadtime {t.deadtime}, "
        f"initdead {t.initdead}",
        f"auto_failback: {cluster.auto_failback}; auth: {cluster.auth_method}",
    ]
    if cluster.uses_ipfail:
        pings = list(cluster.ping) + [f"{name}({' '.join(ips)})"
                                      for name, ips in cluster.ping_groups]
        lines.append(f"ping (ipfail): {', '.join(pings)}")
    return "\n".join(lines + warnings(cluster))
