"""Firewall rules for heartbeat: which tool enforces them on a host, and the script that does.

Every backend renders the same allows (``allow.py``) as its own tool's rules and ships
them in one script, ``/usr/local/sbin/hbdeploy-firewall``, with three verbs: ``apply``
(idempotent: a rerun replaces, never appends), ``check`` (exit 0 when exactly those rules
are in place) and ``remove``. The tool is chosen from the host's facts: ufw or firewalld
when active, else iptables when installed, else nftables. SSH and every rule that is not
hbdeploy's are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from . import firewalld, iptables, nftables, ufw
from .allow import Allow, allows, heard_now

if TYPE_CHECKING:
    from ..facts import HostFacts
    from ..model import Cluster, Node

__all__ = ["Allow", "allows", "boot_unit", "choose", "describe", "heard_now", "rules", "script"]

BACKENDS: dict[str, ModuleType] = {m.NAME: m for m in (iptables, nftables, ufw, firewalld)}
SCRIPT_PATH = "/usr/local/sbin/hbdeploy-firewall"
UNIT_PATH = "/etc/systemd/system/hbdeploy-firewall.service"
BACKEND_MARK = "# backend: "

UNIT = f"""# Managed by hbdeploy: restores heartbeat's firewall rules at boot, and again whenever
# nftables or netfilter-persistent reload theirs (both flush what they did not load).
[Unit]
Description=hbdeploy firewall rules for heartbeat
After=netfilter-persistent.service nftables.service
PartOf=netfilter-persistent.service nftables.service
Before=heartbeat.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={SCRIPT_PATH} apply

[Install]
WantedBy=multi-user.target
"""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def choose(facts: HostFacts) -> tuple[str | None, str]:
    """The backend for this host, or None and the reason no backend fits."""
    if "ufw" in facts.fw_active:
        return "ufw", ""
    if "firewalld" in facts.fw_active:
        if _version(facts.fw_firewalld) < firewalld.MIN_VERSION:
            return None, (f"firewalld {facts.fw_firewalld or '(unknown version)'} is running "
                          "but has no policies (0.9 or later does); upgrade it, or open "
                          "heartbeat's port yourself and set firewall: false")
        return "firewalld", ""
    if {"iptables", "iptables-restore"} <= set(facts.fw_tools):
        return "iptables", ""
    if "nft" in facts.fw_tools:
        return "nftables", ""
    return None, ("no firewall tool found (ufw, firewalld, iptables or nft); install "
                  "nftables or iptables, or set firewall: false")


def rules(backend: str, cluster: Cluster, node: Node, also: Sequence[Allow] = ()
          ) -> list[str]:
    """``node``'s rules in the backend's own syntax, as that tool lists them; then the rules
    for ``also`` (heard_now: the media ``node`` runs on until it re-reads ha.cf) that are
    not among them."""
    wanted = allows(cluster, node)
    wanted += [a for a in also if a not in wanted]
    return [BACKENDS[backend].rule(a) for a in wanted]


def boot_unit(backend: str) -> bool:
    """Whether the backend needs hbdeploy's boot unit to bring its rules back."""
    return bool(BACKENDS[backend].BOOT_UNIT)


def describe(backend: str) -> str:
    return {"iptables": f"iptables chain {iptables.CHAIN}", "nftables": "nftables input chains",
            "ufw": "ufw", "firewalld": f"firewalld policy {firewalld.POLICY}"}[backend]


def script(backend: str, cluster: Cluster, node: Node, also: Sequence[Allow] = ()) -> str:
    """``hbdeploy-firewall [apply|check|remove]`` for ``node`` on ``backend`` (with ``also``:
    rules)."""
    lines = rules(backend, cluster, node, also)
    if any("'" in line or "\n" in line for line in lines):
        raise ValueError("a firewall rule cannot be quoted for sh")  # validation prevents it
    body = "\n".join(lines)
    return f"""#!/bin/sh
# Managed by hbdeploy: heartbeat's firewall rules for node {node.name}.
{BACKEND_MARK}{backend}
# apply: put exactly these rules in place ({describe(backend)}); check: exit 0 when
# they are; remove: take them away. No rule that is not hbdeploy's is touched.
set -eu
RULES='{body}'
{BACKENDS[backend].FUNCTIONS}
case "${{1:-apply}}" in
apply) apply ;;
check) check ;;
remove) remove ;;
*) echo "usage: $0 [apply|check|remove]" >&2; exit 2 ;;
esac
"""
