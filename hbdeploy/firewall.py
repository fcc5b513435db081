"""Firewall rules for heartbeat: what a node must accept, and the iptables script that does it.

Rules live in a chain of their own (``HBDEPLOY``) that a rerun replaces atomically with
``iptables-restore --noflush``; INPUT gets one jump to it, inserted once, first. SSH and
every other rule are never touched. A small systemd unit re-applies the chain at boot.
"""

from __future__ import annotations

from .model import Cluster, Node

CHAIN = "HBDEPLOY"
SCRIPT_PATH = "/usr/local/sbin/hbdeploy-firewall"
UNIT_PATH = "/etc/systemd/system/hbdeploy-firewall.service"


def chain_rules(cluster: Cluster, node: Node) -> list[str]:
    """The ``-A HBDEPLOY ...`` lines for ``node``, exactly as ``iptables -S`` prints them."""
    port = cluster.udpport
    rules = []
    for peer in cluster.nodes:
        if peer.name != node.name:
            rules.append(f"-A {CHAIN} -s {peer.ip}/32 -p udp -m udp --dport {port} -j ACCEPT")
    if cluster.media.mode == "mcast":
        rules.append(f"-A {CHAIN} -d {cluster.media.mcast_group}/32 -p udp -m udp "
                     f"--dport {port} -j ACCEPT")
    for ip in cluster.floating_ips():
        if not cluster.firewall.ports:
            rules.append(f"-A {CHAIN} -d {ip}/32 -j ACCEPT")
        for spec in cluster.firewall.ports:
            rng, _, proto = spec.partition("/")
            rules.append(f"-A {CHAIN} -d {ip}/32 -p {proto} -m {proto} "
                         f"--dport {rng.replace('-', ':')} -j ACCEPT")
    return rules


def script(cluster: Cluster, node: Node) -> str:
    """The boot-time and deploy-time script: ``hbdeploy-firewall [apply|remove]``."""
    body = "\n".join(chain_rules(cluster, node))
    return f"""#!/bin/sh
# Managed by hbdeploy: heartbeat's firewall rules for node {node.name}.
# apply: (re)load chain {CHAIN} atomically and jump to it first from INPUT.
# remove: take the jump and the chain away. No other rule is touched.
set -e
case "${{1:-apply}}" in
apply)
    iptables -w -N {CHAIN} 2>/dev/null || true
    iptables-restore -w --noflush <<'RULES'
*filter
:{CHAIN} - [0:0]
{body}
COMMIT
RULES
    iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}
    ;;
remove)
    while iptables -w -C INPUT -j {CHAIN} 2>/dev/null; do iptables -w -D INPUT -j {CHAIN}; done
    iptables -w -F {CHAIN} 2>/dev/null || true
    iptables -w -X {CHAIN} 2>/dev/null || true
    ;;
*)
    echo "usage: $0 [apply|remove]" >&2; exit 2 ;;
esac
"""


UNIT = f"""# Managed by hbdeploy: restores heartbeat's firewall rules at boot.
[Unit]
Description=hbdeploy firewall rules for heartbeat
After=netfilter-persistent.service nftables.service ufw.service
Before=heartbeat.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={SCRIPT_PATH} apply

[Install]
WantedBy=multi-user.target
"""


def in_place(cluster: Cluster, node: Node, current_rules: list[str], jump: bool) -> bool:
    """Whether the host's chain already holds exactly the wanted rules, jumped to from INPUT."""
    current = [r for r in current_rules if r.startswith(f"-A {CHAIN} ")]
    return jump and current == chain_rules(cluster, node)
