"""heartbeat's node list on running nodes: a node added before they re-read ha.cf
(``hb_addnode``), and a node forgotten for good (``hb_delnode``).

A heartbeat that starts or re-executes asks one peer for the node list (reqnodes) and takes
the answer as the truth: a node missing from it is removed ("Removing node [..] from
configuration") and its packets are refused ("bad node") from then on (heartbeat 3.0.6,
heartbeat.c). So the list must change on every running node at once, with heartbeat's own
messages, not one ha.cf re-read at a time.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

from . import layout
from .apply import wait_until
from .model import Cluster
from .remote import Remote

# Exit 0 when heartbeat lists every one of __NAMES__; else hb_addnode the missing, exit 1.
ADD_UNLISTED = (
    "listed=\" $(echo $(" + layout.CL_STATUS + " listnodes 2>/dev/null)) \"; missing=; "
    "for n in __NAMES__; do case $listed in *\" $n \"*) ;; *) missing=\"$missing $n\";; "
    "esac; done; [ -z \"$missing\" ] && exit 0; "
    + layout.HB_ADDNODE + " $missing >/dev/null 2>&1; exit 1")
ADDNODE_WAIT = 15  # seconds; the message reached both peers of the lab within 0.1 s


def introduce(peers: Sequence[Remote], names: Sequence[str]) -> None:
    """Make every running node of ``peers`` list ``names``: ``hb_addnode`` from the first
    (heartbeat sends it to the whole cluster), then each is polled, and one still missing a
    name sends it again (a node already listing it logs "already exists"). Raises
    RemoteError when one does not within ADDNODE_WAIT seconds."""
    script = ADD_UNLISTED.replace("__NAMES__", " ".join(map(shlex.quote, names)))
    for peer in peers:
        wait_until(f"{peer.label}: listing {', '.join(names)} (hb_addnode)",
                   lambda peer=peer: peer.run(script, check=False, idempotent=True)[0] == 0,
                   ADDNODE_WAIT, 1.0)


def forget(cluster: Cluster, peers: Sequence[Remote], node: str) -> None:
    """Make every peer drop ``node`` from heartbeat's node list (hb_delnode) for good.

    The reload before this made heartbeat re-exec itself (awaited by the rollout); before
    that was awaited, a re-exec after hb_delnode brought the node back once (CI: the
    re-executed node took the list of a peer that still had it), so it must stay forgotten
    for deadtime + 2 s."""
    stay = cluster.timings.deadtime.ms / 1000 + 2
    quoted = shlex.quote(node)
    for peer in peers:
        since: list[float] = []

        def forgotten(peer: Remote = peer, since: list[float] = since) -> bool:
            code, _, _ = peer.run(
                f"if {layout.CL_STATUS} listnodes 2>/dev/null | grep -qx {quoted}; then "
                f"{layout.HB_DELNODE} {quoted} >/dev/null 2>&1; exit 1; fi", check=False,
                idempotent=True)
            if code != 0:
                since.clear()
                return False
            since[:] = since or [time.monotonic()]
            return time.monotonic() - since[0] >= stay

        wait_until(f"{peer.label} forgetting {node} (hb_delnode)", forgotten, 30 + stay, 1.0)
