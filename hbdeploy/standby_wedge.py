"""A standby exchange that heartbeat 3.0.6 never finishes, and how to end it.

heartbeat's standby (``hb_standby``, ``hb_takeover``, auto_failback, ipfail) is a
three-step exchange: node A asks ("me"), node B agrees ("other") and waits, with an hour's
timer, for A's "done"; B ignores every other standby request meanwhile ("Standby in
progress- new request from ... ignored [N seconds left]") and delays its auto_failback.
When A restarts in the middle (the restart heartbeat makes after a split brain heals;
seen in CI when a firewall that had cut the nodes apart was opened again), the new A
knows nothing of it, and B waits the hour: no failback, no handover. heartbeat cancels the
exchange only when A is declared dead, which a quick restart is not.

hbdeploy ends it with heartbeat's own cluster messages (``ha_clustermsg``, as
``hb_standby`` sends its request), from a peer whose own resources are stable: a first
"done" makes B believe A's release is over (B acquires nothing: "none" resources), a second
"done" ends B's part. A peer in no exchange ignores both ("Ignored standby message").
A node is judged stuck on heartbeat's own word: its journal shows it agreed to a peer's
request ("<peer> wants to go standby", or an ignored request with the hour's timer running)
and no end of that exchange since, at least 2 x deadtime (10 s at least) ago, while
it reports its resources in transition; and every node that is not stuck reports its own
stable. That excludes an exchange under way: its asking node is in transition until the
end. Two nodes can be stuck at once (each agreed to the other's request, as a
``hb_takeover`` asked of a stuck node makes it ask): each then ends the other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Cluster
    from .status import NodeView

REQUEST_TIMEOUT = 10  # heartbeat's own wait for an answer to a standby request (seconds)
EXCHANGE_TIMEOUT = 3600  # its wait for the end of an exchange it agreed to (seconds)

# How long the node has waited on a standby exchange, from heartbeat's last word on standby
# since it started: "<peer> wants to go standby" (the node agreed: it waits from then on),
# or an ignored request with more than a request's timeout left (the exchange began
# EXCHANGE_TIMEOUT - left seconds before); any end of an exchange clears it.
ENDED = ("Configuration validated. Starting heartbeat", "standby process completed",
         "acquisition done", "completed standby", "Cancelling pending standby",
         "Standby request cancelled", "standby: acquire")
PROBE = r"""journalctl -u heartbeat.service --since=-__HOUR__s -o short-unix 2>/dev/null | \
awk -v now="${now:-$(date +%s)}" -v me="${node:-$(uname -n)}" '
/__ENDED__/ { since = 0 }
/: info: [^ ]+ wants to go standby \[/ {
  w = $0; sub(/.*: info: /, "", w); sub(/ wants to go standby.*/, "", w)
  if (w != me) since = $1 + 0 }
/Standby in progress- new request from .* ignored \[[0-9]+ seconds left\]/ {
  s = $0; sub(/.*\[/, "", s); sub(/ seconds left\].*/, "", s)
  if (s + 0 > __TIMEOUT__) since = $1 - (__HOUR__ - s) }
END { if (since > 0) printf "standby_wait %d\n", now - since }'""".replace(
    "__ENDED__", "|".join(ENDED)).replace("__TIMEOUT__", str(REQUEST_TIMEOUT)).replace(
    "__HOUR__", str(EXCHANGE_TIMEOUT))

# Two "done" standby messages, sent through heartbeat's FIFO as hb_standby sends its own;
# then the sender announces its resources as stable, as heartbeat does at the end of an
# exchange (and its mach_down script does through the same FIFO): the stuck node cleared
# its "other side is stable" when it agreed, and a sender that was in no exchange would
# never announce again (seen in CI: every later request "ignored.  Other side is in flux").
RELEASE = (". /etc/ha.d/shellfuncs && for i in 1 2; do "
           "printf 't=ask_resources\\nrsc_hold=none\\ninfo=done\\n' | ha_clustermsg; "
           "sleep 0.5; done; held=$(cl_status rscstatus 2>/dev/null); case $held in "
           "none|local|foreign|all) printf 't=resource\\nrsc_hold=%s\\nrtype=full\\n"
           "isstable=1\\n' \"$held\" | ha_clustermsg ;; esac")


def patience(cluster: Cluster) -> float:
    """How long an exchange must have lasted to be judged dropped. An exchange under way
    has its asker in transition until its end, which the judgement requires not to be the
    case; this wait only covers the moments in between (a request sent, the asker not yet
    in transition). It was 2 x deadtime + 10 s (20 s at least) until a rolling update of
    haresources was seen to wedge at the restart of the holder (the restarted node's
    request, dropped): 22 s without failback."""
    return max(10.0, 2 * cluster.timings.deadtime.ms / 1000)


@dataclass(frozen=True)
class Wedge:
    """Node ``stuck`` waits for a standby exchange to end; ``sender`` can end it."""

    stuck: str
    sender: str
    waited: int  # seconds since the exchange began

    def text(self) -> str:
        return (f"heartbeat on {self.stuck} has waited {self.waited} s on a standby exchange "
                "its peer dropped (it ignores every standby and failback until it ends, "
                f"{EXCHANGE_TIMEOUT - self.waited} s more)")

    def repair_text(self) -> str:
        return (f"{self.text()}: ended it with two standby 'done' messages from "
                f"{self.sender}, which then announced its resources (ha_clustermsg)")


def wedges(cluster: Cluster, views: list[NodeView]) -> list[Wedge]:
    """The stuck nodes in ``views``, each with a peer to end its exchange. None unless every
    node runs heartbeat, and every node that is not stuck reports stable resources."""
    if len(views) < 2 or not all(v.reachable and v.heartbeat for v in views):
        return []
    stuck = [v for v in views if v.standby_wait >= patience(cluster)
             and v.resources == "transition"]
    rest = [v for v in views if v not in stuck]
    if not stuck or any(v.resources in ("", "transition", "unknown") for v in rest):
        return []
    return [Wedge(v.node, (rest or [o for o in stuck if o is not v])[0].node, v.standby_wait)
            for v in stuck]
