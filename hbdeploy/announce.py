"""Gratuitous ARP for floating IPs, sent by the node that holds them.

heartbeat announces an address when it acquires one. After a healed partition the node that
kept an address all along never announces it again, so the switches and clients that learned
the spare's MAC during the partition keep sending to the spare until their ARP entry expires
(up to a minute in the lab). Once placement is settled, hbdeploy has each holder announce
its floating IPs with heartbeat's own ``send_arp``, as heartbeat's IPaddr does on a start.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from .remote import Remote, RemoteError

if TYPE_CHECKING:
    from .targets import Target

SEND_ARP = ("/usr/libexec/heartbeat/send_arp", "/usr/lib64/heartbeat/send_arp",
            "/usr/lib/heartbeat/send_arp")

SCRIPT = r"""
for send_arp in __PATHS__; do [ -x "$send_arp" ] && break; done
[ -x "$send_arp" ] || { echo "send_arp not found (resource-agents)" >&2; exit 1; }
for ip in __IPS__; do
  dev=$(ip -o -4 addr show | awk -v ip="$ip" '{ split($4, a, "/") } a[1] == ip { print $2; exit }')
  if [ -n "$dev" ]; then
    "$send_arp" -i 200 -r __REPEATS__ "${dev%%:*}" "$ip" auto "$ip" ffffffffffff && echo "$ip"
  fi
done
true
"""


def announce(remote: Remote, ips: list[str]) -> list[str]:
    """Send gratuitous ARP for each of ``ips`` this host holds; the IPs announced."""
    if not ips:
        return []
    script = (SCRIPT.replace("__PATHS__", " ".join(SEND_ARP)).replace("__REPEATS__", "3")
              .replace("__IPS__", " ".join(shlex.quote(ip) for ip in ips)))
    _, out, _ = remote.run(script, timeout=60, idempotent=True)
    return out.split()


def announce_holders(targets: list[Target], holders: dict[str, list[str]],
                     say: Callable[[Target, str], None]) -> None:
    """Each target announces the floating IPs it alone holds (``holders``: IP -> nodes); a
    failure is said, not raised (the cluster serves either way)."""
    for target in targets:
        ips = [ip for ip, held in holders.items() if held == [target.node.name]]
        try:
            if announce(target.remote, ips):
                say(target, f"announced {', '.join(ips)} (gratuitous ARP)")
        except RemoteError as exc:
            say(target, f"could not announce {', '.join(ips)} (gratuitous ARP): {exc}")
