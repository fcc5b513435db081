"""deploy behind the firewall a host already runs: ufw, firewalld, nftables without iptables.

Each node is locked down first (only SSH in), and the lockdown is proven to block both
heartbeat and the HTTP probe; hbdeploy must then open exactly heartbeat's port from the peer
and the floating IP, in that tool's own terms, replace (not append) on a rerun, and remove.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.demo import http_name

from .conftest import FLOATING_IP, LAB_CLUSTER, cli, hb_links_up, poll, ssh

NODES = ("haproxy1", "haproxy2")
IPS = {"haproxy1": "10.213.0.11", "haproxy2": "10.213.0.12"}
APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {} >/dev/null"
UFW_RULES = "ufw show added | grep hbdeploy"
FIREWALLD_RULES = ("firewall-cmd --policy hbdeploy --list-rich-rules; "
                   "firewall-cmd --permanent --policy hbdeploy --list-rich-rules")
NFT_CONF = """#!/usr/sbin/nft -f
flush ruleset
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif lo accept
        tcp dport 22 accept
    }
}
"""


def links_up(lab: Lab) -> bool:
    return hb_links_up(lab, "haproxy1", "haproxy2") and hb_links_up(lab, "haproxy2", "haproxy1")


def deploy(lab: Lab, cluster: Path = LAB_CLUSTER) -> str:
    result = cli(lab, "deploy", cluster=cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def locked_down(lab: Lab) -> Lab:
    """Bare nodes: haproxy1 behind ufw, haproxy2 behind firewalld, both letting in SSH only."""
    lab.down()
    lab.up(nodes=2)
    ssh(lab, "haproxy1", APT.format("ufw") + " && ufw allow 22/tcp >/dev/null && "
                         "ufw --force enable >/dev/null")
    ssh(lab, "haproxy2", APT.format("firewalld") + " && firewall-cmd --state")
    for node, ip in IPS.items():
        assert http_name(ip, timeout=1) is None, f"{node}'s lockdown lets HTTP in"
        assert ssh(lab, node, "uname -n").stdout.strip() == node  # SSH still gets in
    return lab


def test_deploy_opens_ufw_and_firewalld_for_heartbeat_and_the_floating_ip(
        locked_down: Lab) -> None:
    lab = locked_down
    out = deploy(lab)
    assert "[haproxy1] firewall rules in place (ufw)" in out
    assert "[haproxy2] firewall rules in place (firewalld policy hbdeploy)" in out
    poll(lambda: links_up(lab), 30)
    assert http_name(FLOATING_IP, timeout=1) == "haproxy1"
    for ip in IPS.values():  # the node's own address stays closed: only the floating IP opened
        assert http_name(ip, timeout=1) is None
    assert ssh(lab, "haproxy1", UFW_RULES).stdout.splitlines() == [
        "ufw allow from 10.213.0.12 to any port 694 proto udp comment 'hbdeploy'",
        f"ufw allow to {FLOATING_IP} comment 'hbdeploy'"]
    assert ssh(lab, "haproxy2", FIREWALLD_RULES).stdout.splitlines() == 2 * [
        'rule family="ipv4" source address="10.213.0.11" port port="694" protocol="udp" accept',
        f'rule family="ipv4" destination address="{FLOATING_IP}" accept']
    assert ssh(lab, "haproxy1", "systemctl is-enabled hbdeploy-firewall",
               check=False).stdout.strip() != "enabled"  # ufw restores its own rules at boot


def test_a_spare_behind_firewalld_takes_over_and_answers(locked_down: Lab) -> None:
    lab = locked_down
    ssh(lab, "haproxy1", "systemctl stop heartbeat")
    try:
        poll(lambda: http_name(FLOATING_IP) == "haproxy2", 30)
    finally:
        ssh(lab, "haproxy1", "systemctl start heartbeat")
    poll(lambda: links_up(lab) and http_name(FLOATING_IP) == "haproxy1", 60)  # auto_failback


def test_rerun_keeps_and_a_new_port_list_replaces_the_rules(
        locked_down: Lab, tmp_path: Path) -> None:
    lab = locked_down
    before = {n: ssh(lab, n, UFW_RULES if n == "haproxy1" else FIREWALLD_RULES).stdout
              for n in NODES}
    assert "unchanged: nothing to do on 2 host(s)" in deploy(lab)
    assert {n: ssh(lab, n, UFW_RULES if n == "haproxy1" else FIREWALLD_RULES).stdout
            for n in NODES} == before
    http_only = tmp_path / "http-only.yml"
    http_only.write_text(LAB_CLUSTER.read_text() + "firewall:\n  ports: [80/tcp]\n")
    check = cli(lab, "deploy", "--check", cluster=http_only)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"[haproxy1]   allow to {FLOATING_IP} port 80 proto tcp" in check.stdout
    out = deploy(lab, http_only)
    assert "firewall rules in place" in out and "restart" not in out
    assert ssh(lab, "haproxy1", UFW_RULES).stdout.splitlines() == [
        "ufw allow from 10.213.0.12 to any port 694 proto udp comment 'hbdeploy'",
        f"ufw allow to {FLOATING_IP} port 80 proto tcp comment 'hbdeploy'"]
    assert f'destination address="{FLOATING_IP}" port port="80" protocol="tcp" accept' in \
        ssh(lab, "haproxy2", FIREWALLD_RULES).stdout
    assert f'destination address="{FLOATING_IP}" accept' not in \
        ssh(lab, "haproxy2", FIREWALLD_RULES).stdout
    assert http_name(FLOATING_IP, timeout=1) == "haproxy1" and links_up(lab)


def test_firewall_remove_takes_only_hbdeploys_rules(locked_down: Lab) -> None:
    lab = locked_down
    removed = cli(lab, "firewall.remove")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert removed.stdout.count("firewall rules removed") == 2
    assert ssh(lab, "haproxy1", UFW_RULES, check=False).stdout == ""
    assert "ufw allow 22/tcp" in ssh(lab, "haproxy1", "ufw show added").stdout
    assert "hbdeploy" not in ssh(lab, "haproxy2", "firewall-cmd --permanent --get-policies").stdout
    poll(lambda: not hb_links_up(lab, "haproxy1", "haproxy2"), 30)  # the lockdown bites again
    deploy(lab)
    poll(lambda: links_up(lab), 30)


def test_nftables_without_iptables_survives_an_nftables_reload(locked_down: Lab) -> None:
    """haproxy1 drops ufw and iptables for a native nftables ruleset with policy drop."""
    lab = locked_down
    ssh(lab, "haproxy1", "ufw --force disable >/dev/null && DEBIAN_FRONTEND=noninteractive "
                         "apt-get purge -y -qq ufw iptables >/dev/null && "
                         f"printf '%s' '{NFT_CONF}' > /etc/nftables.conf && "
                         "systemctl enable -q nftables && systemctl restart nftables")
    assert ssh(lab, "haproxy1", "command -v iptables", check=False).returncode != 0
    poll(lambda: not hb_links_up(lab, "haproxy1", "haproxy2"), 30)
    out = deploy(lab)
    assert "[haproxy1] firewall rules in place (nftables input chains)" in out
    poll(lambda: links_up(lab), 30)
    listed = "nft list chain inet filter input | grep hbdeploy"
    assert [r.strip() for r in ssh(lab, "haproxy1", listed).stdout.splitlines()] == [
        'ip saddr 10.213.0.12 udp dport 694 accept comment "hbdeploy"',
        f'ip daddr {FLOATING_IP} accept comment "hbdeploy"']
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)  # auto_failback after the lockdown
    assert "unchanged: nothing to do on 2 host(s)" in deploy(lab)  # rules found in place
    # nftables' reload flushes the ruleset; the boot unit, part of nftables.service, is
    # restarted with it and puts the rules back.
    ssh(lab, "haproxy1", "systemctl restart nftables")
    poll(lambda: ssh(lab, "haproxy1", listed, check=False).stdout.count("hbdeploy") == 2, 30)
    poll(lambda: links_up(lab), 30)
    removed = cli(lab, "firewall.remove", hosts="haproxy1")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert ssh(lab, "haproxy1", listed, check=False).stdout == ""
    assert "tcp dport 22 accept" in ssh(lab, "haproxy1", "nft list ruleset").stdout
