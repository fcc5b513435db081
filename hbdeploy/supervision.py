"""Keeping heartbeat running where it should: what hbdeploy adds to every node's systemd.

- A drop-in for ``heartbeat.service``: ``Restart=always``. Debian's unit has ``Restart=no``,
  so heartbeat stayed down after a crash, a ``kill -9`` or one of its own split-brain
  restarts that systemd saw as an exit.
- ``hbdeploy-guard``: a node that cannot reach any reference address (the cluster's
  ``ping`` addresses, else its default gateway) and has lost every peer (no answer to ping
  for ``early_ms``, else heartbeat's verdict) is the one cut off; it stops heartbeat,
  releases its resources and starts heartbeat again once the network answers, so that it
  rejoins as a new member and the node that served during the cut keeps serving
  (docs/operations.md, "Partitions").
- With spares, the member gate (the guard's ``gate`` mode, before every start): a node a
  spare replaced does not start heartbeat when it comes back (docs/operations.md, "Hot
  spares").
"""

from __future__ import annotations

from . import layout
from .announce import SEND_ARP
from .model import Cluster
from .render import HEADER, RenderedFile, template

DROPIN_DIR = "/etc/systemd/system/heartbeat.service.d"
DROPIN_PATH = f"{DROPIN_DIR}/hbdeploy.conf"
GUARD_PATH = "/usr/local/sbin/hbdeploy-guard"
GUARD_UNIT_PATH = "/etc/systemd/system/hbdeploy-guard.service"
GUARD_STOPPED = "/run/hbdeploy-guard.stopped"
PATHS = {"dropin": DROPIN_PATH, "guard": GUARD_PATH, "guard.service": GUARD_UNIT_PATH}
RESTART_SEC = "200ms"  # back before a peer declares it dead, even with deadtime 1 s

STOP_TIMEOUT = "30s"  # Debian's unit: 30 min, and no SIGKILL

DROPIN = f"""# {HEADER}
# heartbeat comes back by itself after a crash, a kill or a restart it could not finish;
# `systemctl stop heartbeat` still stops it for good. Before a start, what a killed
# heartbeat left running (its ipfail, its children) goes: it would talk for a dead daemon.
# A stop that has not ended within {STOP_TIMEOUT} is ended with SIGKILL, and the node's
# resources are then released with heartbeat's ResourceManager, as a stop would have
# (heartbeat 3.0.6 was seen to ignore `heartbeat -k` for good after a reload).
[Unit]
StartLimitIntervalSec=0

[Service]
Restart=always
RestartSec={RESTART_SEC}
ExecStartPre=-{GUARD_PATH} cleanup
__GATE__TimeoutStopSec={STOP_TIMEOUT}
TimeoutStopFailureMode=kill
SendSIGKILL=yes
ExecStopPost=-{GUARD_PATH} stopped
"""

# In a cluster with spares: a node that comes back after a spare replaced it must not start
# heartbeat (it would declare its old peers dead after initdead and take the floating IPs).
GATE = f"""# A member that finds a floating IP answering from another node and hears no heartbeat
# from its peers within the gate's wait is no longer listened to (a spare replaced it, or
# its peers dropped it): heartbeat does not start (journalctl -u heartbeat says why).
ExecStartPre={GUARD_PATH} gate
"""
GATE_MIN_WAIT_MS = 10000  # a peer being reloaded to list this node re-executes in ~2-3 s


def dropin(cluster: Cluster) -> str:
    """heartbeat.service's drop-in; with spares, the member gate too."""
    return DROPIN.replace("__GATE__", GATE if cluster.spares else "")


GUARD_UNIT = f"""# {HEADER}
[Unit]
Description=hbdeploy guard: an isolated node steps out of the heartbeat cluster
After=heartbeat.service network-online.target

[Service]
ExecStart={GUARD_PATH}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def references(cluster: Cluster, gateway: str) -> list[str]:
    """The addresses an isolated node cannot reach: ``ping`` (and ping groups), else the
    node's default gateway; empty when there is neither (the guard then never acts)."""
    listed = [*cluster.ping, *(ip for _, ips in cluster.ping_groups for ip in ips)]
    return listed or ([gateway] if gateway else [])


# How often the guard wakes heartbeat's master (SIGCHLD) so that it checks its peers for
# deadtime: it does so when its main loop wakes and 250 ms have passed since its last check.
WAKE_MS = 50

GUARD_REACTION_MS = 1500  # the guard's pings (0.4 s), a loop turn, the kill: with margin
EARLY_MIN_MS = 1500  # shorter silences are ordinary packet loss, not a cut


def early_ms(cluster: Cluster) -> int:
    """After how long without an answer from any reference or peer the guard takes its node
    out without waiting for heartbeat's verdict: early enough that the node is gone before a
    peer can declare it dead (deadtime after the last heartbeat it heard, which can be a
    keepalive before the cut). 0 when deadtime leaves no room for that (the guard then
    acts on heartbeat's verdict alone)."""
    t = cluster.timings
    early = t.deadtime.ms - t.keepalive.ms - GUARD_REACTION_MS
    return early if early >= EARLY_MIN_MS else 0


def render(cluster: Cluster, node_name: str, gateway: str,
           heartbeat_path: str) -> dict[str, RenderedFile]:
    """The node's drop-in, guard script and guard unit, keyed like ``PATHS``."""
    node = cluster.node(node_name)
    peers = [n for n in cluster.nodes if n.name != node.name]
    guard = template("hbdeploy-guard.j2").render(
        header=HEADER, node=node, peers=peers, references=references(cluster, gateway),
        heartbeat_dir=heartbeat_path.rsplit("/", 1)[0], heartbeat_path=heartbeat_path,
        pidfile=layout.PIDFILE, read_master=layout.READ_MASTER, wake_ms=WAKE_MS,
        stopped=GUARD_STOPPED,
        floating=cluster.floating_ips(), send_arp=SEND_ARP,
        silence_cs=min(200, cluster.timings.deadtime.ms // 10),
        early_cs=early_ms(cluster) // 10, gate=bool(cluster.spares), udpport=cluster.udpport,
        gate_wait_s=max(GATE_MIN_WAIT_MS, cluster.timings.deadtime.ms) // 1000)
    return {"dropin": RenderedFile("dropin", dropin(cluster), 0o644, path=DROPIN_PATH),
            "guard": RenderedFile("guard", guard, 0o755, path=GUARD_PATH),
            "guard.service": RenderedFile("guard.service", GUARD_UNIT, 0o644,
                                          path=GUARD_UNIT_PATH)}


# Reported by the facts probe (which sums every file it tracks in one sha256sum, PATHS
# among them, and asks systemd about the guard's unit in its one systemctl call): whether
# the guard holds heartbeat stopped, and the default route's gateway (no sed, no head).
# Not read from /proc/net/route by the shell (a process less): its addresses are in the
# host's byte order, and a gateway read backwards on a big-endian host would be a guard
# reference that never answers.
PROBE = "\n".join(
    [f'[ -e {GUARD_STOPPED} ] && p guard_stopped yes',
     'set -- $(ip -4 route show default 2>/dev/null)',
     'while [ $# -gt 1 ] && [ "$1" != via ]; do shift; done',
     '[ "$1" = via ] && p gateway "$2"; set --'])

REMOVE = (f"systemctl disable --now hbdeploy-guard.service >/dev/null 2>&1; "
          f"rm -f {GUARD_UNIT_PATH} {GUARD_PATH} {DROPIN_PATH} {GUARD_STOPPED}; "
          f"rmdir {DROPIN_DIR} 2>/dev/null; systemctl daemon-reload")
