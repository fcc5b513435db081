"""Fast tests of the decisions behind deploy and status (the lab tests prove them for real)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hbdeploy import firewall, layout, supervision, sysctl, validate
from hbdeploy.converge import issues
from hbdeploy.errors import ConfigError
from hbdeploy.facts import HostFacts, parse
from hbdeploy.plan import plan_host, preflight, sha256
from hbdeploy.render import render_node
from hbdeploy.source import from_document
from hbdeploy.status import CRITICAL, DEGRADED, HEALTHY, NodeView, assess, parse_view
from hbdeploy.status import probe as status_probe


def cluster(**over: object):
    doc = {"nodes": {"n1": "10.9.0.1", "n2": "10.9.0.2"},
           "resources": {"n1": "10.9.0.100"}, "password": "pw-123-of-the-unit-tests"}
    doc.update(over)
    return validate.load(from_document(doc, None), environ={})  # type: ignore[arg-type]


PROBE_OUTPUT = "\n".join([
    "uname\tn1", "os_id\tdebian", "os_like\t", "os_version\t12", "init\tsystemd",
    "pkg_tool\tapt", "pkg_version\t1:3.0.6-13+b2", "net_tools\tyes", "sha_ha.cf\tabc",
    "mode_ha.cf\t644 root",
    "hb_active\tactive", "hb_enabled\tenabled", "hb_pid\t321", "addr\teth0 10.9.0.1",
    "addr\teth0 10.9.0.100", "link\tlo", "link\teth0", "fw_tool\tiptables",
    "fw_tool\tiptables-restore", "fw_tool\tnft", "fw_backend\tiptables", "fw_check\tok",
])


def test_facts_parse() -> None:
    facts = parse(PROBE_OUTPUT)
    assert (facts.uname, facts.os_id, facts.hb_pid, facts.installed) == ("n1", "debian", 321,
                                                                         True)
    assert facts.ips() == {"10.9.0.1", "10.9.0.100"}
    assert facts.links == ["lo", "eth0"] and facts.fw_check == "ok" and facts.running
    assert facts.fw_tools == ["iptables", "iptables-restore", "nft"]
    assert facts.checksums == {"ha.cf": "abc"}


def test_preflight_names_both_fixes_for_a_wrong_hostname() -> None:
    c = cluster()
    facts = parse(PROBE_OUTPUT.replace("uname\tn1", "uname\tweb7"))
    (problem,) = preflight("host-a", c.node("n1"), facts, c)
    assert "`uname -n` prints 'web7'" in problem and "'n1'" in problem
    assert "rename the node to 'web7'" in problem and "hostnamectl set-hostname n1" in problem


def test_preflight_unsupported_os_missing_interface_and_address() -> None:
    c = cluster(interface="eth1")
    facts = parse(PROBE_OUTPUT.replace("os_id\tdebian", "os_id\tarch")
                  .replace("addr\teth0 10.9.0.1\n", ""))
    problems = " | ".join(preflight("h", c.node("n1"), facts, c))
    assert "unsupported OS arch" in problems
    assert "interface 'eth1'" in problems
    assert "10.9.0.1 is not on any of its interfaces" in problems


def test_preflight_supports_debian_12_and_13_and_refuses_the_rhel_family() -> None:
    c = cluster()
    assert preflight("h", c.node("n1"), parse(PROBE_OUTPUT.replace(
        "os_version\t12", "os_version\t13")), c) == []
    for os_id, like, version, expected in [
            ("rocky", "rhel centos fedora", "9.4", "RHEL family"),
            ("centos", "rhel fedora", "7", "EPEL 6"), ("debian", "", "11", "Debian 12 and 13"),
            ("ubuntu", "debian", "24.04", "unsupported OS ubuntu 24.04")]:
        facts = parse(PROBE_OUTPUT.replace("os_id\tdebian", f"os_id\t{os_id}")
                      .replace("os_like\t", f"os_like\t{like}")
                      .replace("os_version\t12", f"os_version\t{version}"))
        (problem,) = preflight("h", c.node("n1"), facts, c)
        assert expected in problem and problem.startswith("h: "), problem


def test_install_false_checks_the_operators_heartbeat_and_installs_nothing() -> None:
    from hbdeploy import layout
    c = cluster(install=False, resources={"n1": ["10.9.0.100", "haproxy"]},
                ping=["10.9.0.254"])
    node = c.node("n1")
    assert not node.install
    bare = parse(PROBE_OUTPUT.replace("pkg_version\t1:3.0.6-13+b2", "pkg_version\t")
                 .replace("net_tools\tyes", ""))
    tools, scripts = preflight("h", node, bare, c)
    assert "install: false (nodes.n1.install or install)" in tools
    assert layout.HEARTBEAT in tools and layout.IPFAIL in tools
    assert "ifconfig" in tools
    assert "IPaddr, haproxy" in scripts and "/etc/init.d" in scripts
    has = [*layout.TOOLS, layout.IPFAIL, "/etc/ha.d/resource.d/IPaddr", "/etc/init.d/haproxy"]
    provided = parse(PROBE_OUTPUT.replace("pkg_version\t1:3.0.6-13+b2", "pkg_version\t")
                     + "".join(f"\nhas\t{path}" for path in has))
    assert preflight("h", node, provided, c) == []
    plan = plan_host("h", node, provided, c)
    assert not plan.install and plan.installed
    mixed = cluster(nodes={"n1": {"ip": "10.9.0.1", "install": False}, "n2": "10.9.0.2"})
    assert [n.install for n in mixed.nodes] == [False, True]


def test_preflight_refuses_an_ipaddr_interface_the_host_lacks() -> None:
    c = cluster(resources={"n1": ["IPaddr::10.9.0.100/24/eth9", "IPaddr2::10.9.0.101/24/eth0:1",
                                  "10.9.0.102"]})
    assert c.groups[0].interfaces() == ("eth9", "eth0")
    problems = preflight("h", c.node("n1"), parse(PROBE_OUTPUT), c)
    assert len(problems) == 1 and "interface 'eth9'" in problems[0]
    assert "resources.n1" in problems[0]


def test_plan_up_to_date_host_changes_nothing() -> None:
    c = cluster()
    node = c.node("n1")
    files = render_node(c, "n1")
    facts = parse(PROBE_OUTPUT)
    facts.checksums = {n: sha256(f.content) for n, f in files.items()}
    facts.modes = {n: f"{f.mode:o} root" for n, f in files.items()}
    facts.fw_script = sha256(firewall.script("iptables", c, node))
    facts.fw_unit = "enabled"
    facts.checksums.update({k: sha256(f.content) for k, f in supervision.render(
        c, "n1", "", "/usr/libexec/heartbeat/heartbeat").items()})
    facts.guard_active, facts.guard_enabled = "active", "enabled"
    plan = plan_host("h", node, facts, c)
    assert not plan.changes_anything and not plan.restart
    facts.guard_active = "failed"  # a guard that died is started again, nothing else
    plan = plan_host("h", node, facts, c)
    assert plan.start_guard and not plan.changed_supervision and not plan.restart
    facts.net_tools = ""  # heartbeat's IPaddr needs ifconfig: net-tools installed, no restart
    plan = plan_host("h", node, facts, c)
    assert plan.install and not plan.restart and plan.packages.startswith("net-tools")


def test_files_an_earlier_run_left_unread_are_reloaded_or_restarted_for() -> None:
    c = cluster()
    node = c.node("n1")
    files = render_node(c, "n1")
    facts = parse(PROBE_OUTPUT + "\nhb_invocation\tabc\nunapplied\tabc 20261205T120000 "
                  "ha.cf ha.cf\n")
    facts.checksums = {n: sha256(f.content) for n, f in files.items()}
    facts.modes = {n: f"{f.mode:o} root" for n, f in files.items()}
    assert facts.running and facts.unapplied == ["ha.cf"]
    assert facts.unapplied_stamp == "20261205T120000"
    plan = plan_host("h", node, facts, c)
    assert plan.written == [] and plan.rereading == ["ha.cf"] and plan.reload_only
    facts.unapplied_line = "abc 20261205T120000 haresources"  # needs a restart
    plan = plan_host("h", node, facts, c)
    assert plan.restart and not plan.reload_only and plan.deferred == []
    facts.hb_invocation = "def"  # heartbeat started since: it read them
    assert facts.unapplied == [] and not plan_host("h", node, facts, c).rereading
    facts.hb_invocation, facts.hb_active = "abc", "inactive"
    assert facts.unapplied == []


def test_plan_reload_only_for_hacf_and_authkeys_and_defer_haresources_on_holder() -> None:
    c = cluster()
    node = c.node("n1")
    facts = parse(PROBE_OUTPUT)
    files = render_node(c, "n1")
    facts.checksums = {n: sha256(f.content) for n, f in files.items() if n == "haresources"}
    facts.modes = {n: f"{f.mode:o} root" for n, f in files.items()}
    plan = plan_host("h", node, facts, c)
    assert sorted(plan.changed_files) == ["authkeys", "ha.cf"] and plan.reload_only
    facts.net_tools = ""
    assert plan_host("h", node, facts, c).reload_only  # installing net-tools keeps it
    facts.net_tools = "yes"
    facts.checksums = {}  # all three files change, the password too
    plan = plan_host("h", node, facts, c)
    # n1 holds 10.9.0.100: haresources waits for its release; ha.cf waits for the restart
    # (the new password's reload must not make heartbeat re-execute itself)
    assert not plan.reload_only and plan.deferred == ["ha.cf", "haresources"]
    authkeys = sha256(files["authkeys"].content)
    facts.checksums = {"authkeys": authkeys}  # same password: ha.cf is written at once
    plan = plan_host("h", node, facts, c)
    assert not plan.reload_only and plan.deferred == ["haresources"]


def three_node_mcast_with_ports():
    return cluster(nodes={"n1": "10.9.0.1", "n2": "10.9.0.2", "n3": "10.9.0.3"}, mode="mcast",
                   mcast_group="239.1.1.1", firewall={"ports": [80, "8000-8080/tcp", "53/udp"]})


def test_firewall_rules_per_peer_mcast_and_ports() -> None:
    c = three_node_mcast_with_ports()
    assert firewall.rules("iptables", c, c.node("n2")) == [
        "-A HBDEPLOY -s 10.9.0.1/32 -p udp -m udp --dport 694 -j ACCEPT",
        "-A HBDEPLOY -s 10.9.0.3/32 -p udp -m udp --dport 694 -j ACCEPT",
        "-A HBDEPLOY -d 239.1.1.1/32 -p udp -m udp --dport 694 -j ACCEPT",
        "-A HBDEPLOY -d 10.9.0.100/32 -p tcp -m tcp --dport 80 -j ACCEPT",
        "-A HBDEPLOY -d 10.9.0.100/32 -p tcp -m tcp --dport 8000:8080 -j ACCEPT",
        "-A HBDEPLOY -d 10.9.0.100/32 -p udp -m udp --dport 53 -j ACCEPT",
    ]
    script = firewall.script("iptables", c, c.node("n2"))  # INPUT's jump is inserted first
    assert not [line for line in script.splitlines() if "iptables" in line and "-A INPUT" in line]


def test_firewall_rules_in_each_tools_own_listing_syntax() -> None:
    c = three_node_mcast_with_ports()
    n2 = c.node("n2")
    assert firewall.rules("nftables", c, n2)[::2] == [
        'ip saddr 10.9.0.1 udp dport 694 accept comment "hbdeploy"',
        'ip daddr 239.1.1.1 udp dport 694 accept comment "hbdeploy"',
        'ip daddr 10.9.0.100 tcp dport 8000-8080 accept comment "hbdeploy"',
    ]
    assert firewall.rules("ufw", c, n2)[::2] == [
        "allow from 10.9.0.1 to any port 694 proto udp",
        "allow to 239.1.1.1 port 694 proto udp",
        "allow to 10.9.0.100 port 8000:8080 proto tcp",
    ]
    assert firewall.rules("firewalld", c, n2)[::2] == [
        'rule family="ipv4" source address="10.9.0.1" port port="694" protocol="udp" accept',
        'rule family="ipv4" destination address="239.1.1.1" port port="694" protocol="udp" '
        'accept',
        'rule family="ipv4" destination address="10.9.0.100" port port="8000-8080" '
        'protocol="tcp" accept',
    ]
    plain = cluster()
    assert firewall.rules("ufw", plain, plain.node("n1"))[-1] == "allow to 10.9.0.100"
    assert firewall.rules("nftables", plain, plain.node("n1"))[-1] == (
        'ip daddr 10.9.0.100 accept comment "hbdeploy"')


def test_a_media_change_keeps_the_media_heartbeat_runs_on_let_in() -> None:
    """heard_now reads the ha.cf a node runs on; the rules of a media change add it to the
    new ones (deploy widens, then narrows once every node has re-read ha.cf)."""
    old = cluster()
    new = cluster(udpport=695)
    n1 = new.node("n1")
    running = render_node(old, "n1")["ha.cf"].content
    assert firewall.heard_now(new, n1, running) == [
        firewall.Allow(source="10.9.0.2", proto="udp", ports=(694, 694))]
    assert firewall.rules("iptables", new, n1, firewall.heard_now(new, n1, running)) == [
        "-A HBDEPLOY -s 10.9.0.2/32 -p udp -m udp --dport 695 -j ACCEPT",
        "-A HBDEPLOY -d 10.9.0.100/32 -j ACCEPT",
        "-A HBDEPLOY -s 10.9.0.2/32 -p udp -m udp --dport 694 -j ACCEPT",
    ]
    # Nothing the new rules have already is repeated: the same media, the same script.
    same = render_node(new, "n1")["ha.cf"].content
    assert firewall.script("iptables", new, n1, firewall.heard_now(new, n1, same)) == \
        firewall.script("iptables", new, n1)
    # A multicast group, on the port its mcast line names; a hand-built ha.cf with no
    # udpport line (heartbeat's 694), a bcast line, and a ucast peer the cluster lacks.
    mcast = render_node(three_node_mcast_with_ports(), "n1")["ha.cf"].content
    assert "\nmcast eth0 239.1.1.1 694 1 0\n" in mcast
    assert firewall.heard_now(new, n1, mcast.replace("239.1.1.1 694", "239.1.1.1 700")) == [
        firewall.Allow(source="10.9.0.2", proto="udp", ports=(700, 700)),
        firewall.Allow(dest="239.1.1.1", proto="udp", ports=(700, 700))]
    hand = "# by hand\nbcast eth0\nucast eth0 10.9.0.1\nucast eth0 10.9.0.7\nnode n1 n2\n"
    assert firewall.heard_now(new, n1, hand) == [
        firewall.Allow(source=ip, proto="udp", ports=(694, 694))
        for ip in ("10.9.0.2", "10.9.0.7")]  # its own address left out
    assert firewall.heard_now(new, n1, "udpport nonsense\nserial /dev/ttyS0\n") == []


def test_firewall_backend_follows_what_the_host_runs() -> None:
    facts = parse(PROBE_OUTPUT)
    assert firewall.choose(facts) == ("iptables", "")
    facts.fw_tools = ["nft"]
    assert firewall.choose(facts) == ("nftables", "")
    facts.fw_active = ["firewalld"]
    facts.fw_firewalld = "0.6.3"
    backend, why = firewall.choose(facts)
    assert backend is None and "0.9 or later" in why
    facts.fw_firewalld = "1.3.3"
    assert firewall.choose(facts) == ("firewalld", "")
    facts.fw_active = ["ufw"]
    assert firewall.choose(facts) == ("ufw", "")
    facts.fw_active, facts.fw_tools = [], []
    backend, why = firewall.choose(facts)
    assert backend is None and "firewall: false" in why
    problems = preflight("h", cluster().node("n1"), facts, cluster())
    assert any("no firewall tool found" in p for p in problems)


def test_firewall_plan_reapplies_when_check_fails_or_backend_changes() -> None:
    c = cluster()
    node = c.node("n1")
    facts = parse(PROBE_OUTPUT)
    facts.fw_script = sha256(firewall.script("iptables", c, node))
    facts.fw_unit = "enabled"
    assert not plan_host("h", node, facts, c).firewall
    facts.fw_check = "differs"  # someone deleted a rule: the same script puts it back
    assert plan_host("h", node, facts, c).firewall
    facts.fw_check = "ok"
    facts.fw_active = ["ufw"]  # ufw was enabled since: its rules, and no boot unit
    plan = plan_host("h", node, facts, c)
    assert plan.firewall and plan.firewall_backend == "ufw"


def view(node: str, holds=(), reachable=True, heartbeat=True, peer_state="active"):
    peer = "n2" if node == "n1" else "n1"
    return NodeView(node, node, reachable=reachable, heartbeat=heartbeat,
                    peers={peer: peer_state}, links={f"{peer}/eth0": "up"}, holds=list(holds))


def test_status_codes() -> None:
    c = cluster()
    assert assess(c, [view("n1", ["n1"]), view("n2")]).code == HEALTHY
    degraded = assess(c, [view("n1", ["n1"], peer_state="dead"), view("n2", reachable=False)])
    assert degraded.code == DEGRADED
    split = assess(c, [view("n1", ["n1"]), view("n2", ["n1"])])
    assert split.code == CRITICAL and "split brain" in split.problems[0]
    orphan = assess(c, [view("n1"), view("n2")])
    assert orphan.code == CRITICAL and "orphaned" in orphan.problems[0]
    nobody = assess(c, [view("n1", reachable=False), view("n2", reachable=False)])
    assert nobody.code == CRITICAL and nobody.problems == ["no node is reachable"]


def test_status_says_heartbeat_down_with_its_fix_and_no_spare_left() -> None:
    c = cluster()
    down = assess(c, [view("n1", ["n1"], peer_state="dead"), view("n2", heartbeat=False)])
    assert down.code == DEGRADED
    text = " | ".join(down.problems)
    assert "n2: heartbeat is not running; fix: `systemctl start heartbeat`" in text
    assert "no spare left: heartbeat runs on 1 of 2 nodes" in text
    cut = view("n2", heartbeat=False)
    cut.guard_stopped = True
    isolated = assess(c, [view("n1", ["n1"], peer_state="dead"), cut])
    assert "hbdeploy-guard holds heartbeat stopped" in " ".join(isolated.problems)


class FakeRemote:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **_: object):
        self.commands.append(command)
        return 0, "", ""


def converge_issues(c, views):
    from hbdeploy.targets import Target

    remotes = {n.name: FakeRemote() for n in c.nodes}
    targets = [Target(n.name, n, remotes[n.name]) for n in c.nodes]  # type: ignore[arg-type]
    found = issues(c, targets, assess(c, views))
    return found, remotes


def detached(command: str) -> list[str]:
    """A repair as converge runs it: its output (and its children's) goes nowhere, so a
    background child of heartbeat's scripts cannot hold the SSH session open."""
    return [f"( {command} ) </dev/null >/dev/null 2>&1"]


def test_converge_repairs_each_state_a_heal_can_leave() -> None:
    c = cluster()
    found, remotes = converge_issues(c, [view("n1", ["n1"], peer_state="dead"),
                                         view("n2", heartbeat=False)])
    assert [i.key for i in found] == ["hears n1 n2", "down n2"]  # placement waits for both
    down = found[1]
    assert down.repair and down.patience > 0
    down.repair()
    assert remotes["n2"].commands == detached("systemctl start heartbeat.service")
    (orphan,), remotes = converge_issues(c, [view("n1"), view("n2")])
    orphan.repair()  # type: ignore[misc]
    assert remotes["n1"].commands == detached("/usr/share/heartbeat/hb_takeover local; "
                                              "/usr/share/heartbeat/ResourceManager "
                                              "takegroup IPaddr::10.9.0.100")
    (twice,), remotes = converge_issues(c, [view("n1", ["n1"]), view("n2", ["n1"])])
    twice.repair()  # type: ignore[misc]
    assert remotes["n2"].commands == detached("/usr/share/heartbeat/ResourceManager "
                                              "givegroup IPaddr::10.9.0.100")
    assert not remotes["n1"].commands and "n1 keeps it" in twice.repair_text
    (away,), remotes = converge_issues(c, [view("n1"), view("n2", ["n1"])])
    away.repair()  # type: ignore[misc]
    assert remotes["n1"].commands == detached("/usr/share/heartbeat/hb_takeover local")
    deadtime = c.timings.deadtime.ms / 1000
    assert away.patience == 2 * deadtime
    busy = view("n2", ["n1"])
    busy.resources = "transition"  # heartbeat's own failback may be under way
    (waits,), _ = converge_issues(c, [view("n1"), busy])
    assert waits.key == "away n1 busy" and waits.patience == 6 * deadtime
    off = cluster(auto_failback=False)
    assert converge_issues(off, [view("n1"), view("n2", ["n1"])])[0] == []
    cut = view("n2", heartbeat=False)
    cut.guard_stopped = True
    found, _ = converge_issues(c, [view("n1", ["n1"], peer_state="dead"), cut])
    assert [i.repair for i in found] == [None, None]  # the guard brings it back


def test_guard_references_are_ping_then_the_gateway() -> None:
    hb = "/usr/libexec/heartbeat/heartbeat"
    guard = supervision.render(cluster(ping="10.9.0.254"), "n1", "10.9.0.1", hb)["guard"]
    assert 'REFERENCES="10.9.0.254"' in guard.content and 'PEER_IPS="10.9.0.2"' in guard.content
    assert guard.remote_path == "/usr/local/sbin/hbdeploy-guard" and guard.mode == 0o755
    assert 'REFERENCES="10.9.0.1"' in supervision.render(cluster(), "n1", "10.9.0.1",
                                                         hb)["guard"].content
    silent = supervision.render(cluster(), "n1", "", hb)["guard"].content
    assert 'REFERENCES=""' in silent and "the guard never acts" in silent
    assert "Restart=always" in supervision.DROPIN


def test_a_node_the_file_does_not_name_in_heartbeats_node_list() -> None:
    """A member taken out of the cluster file without `decommission` (heartbeat keeps a
    node hb_addnode added): dead, converge drops it from the lists that have it (hb_delnode);
    alive, it is a member still, with no repair (the deploy refuses to run)."""
    c = cluster(ping="10.9.0.254")
    script = status_probe(c, "n1")
    assert "for k in n1 n2 10.9.0.254; do" in script and "cl_status listnodes" in script
    upper = cluster(nodes={"N1": "10.9.0.1", "n2": "10.9.0.2"}, resources={"N1": "10.9.0.100"})
    assert "for k in n1 n2; do" in status_probe(upper, "N1")  # as heartbeat lists them
    out = "hb up\npeer n2 active\nstranger n3 normal dead\nstranger gw ping up\n"
    seen = parse_view(c, "n1", "n1", out)
    assert seen.strangers == {"n3": "dead"}  # a ping node is no member
    n1, n2 = view("n1", ["n1"]), view("n2")
    n1.strangers = n2.strangers = {"n3": "dead"}
    status = assess(c, [n1, n2])
    assert status.code == DEGRADED
    assert "n1 still lists n3 (dead)" in status.problems[0] and "hb_delnode" in status.problems[0]
    (dead,), remotes = converge_issues(c, [n1, n2])
    assert dead.key == "stranger n3" and dead.patience == c.timings.deadtime.ms / 1000
    dead.repair()  # type: ignore[misc]
    assert remotes["n1"].commands == remotes["n2"].commands == detached(
        "/usr/share/heartbeat/hb_delnode n3")
    n2.strangers = {"n3": "active"}
    (live,), _ = converge_issues(c, [n1, n2])
    assert live.key == "member n3" and live.repair is None
    assert "hbdeploy decommission n3" in live.text


def test_a_claim_without_holding_is_a_problem_repaired_once_no_list_has_a_stranger() -> None:
    c = cluster(ping="10.9.0.254")
    n1, n2 = view("n1", ["n1"]), view("n2")
    n1.resources, n2.resources = "all", "all"  # n2 claims n1's group and holds nothing
    status = assess(c, [n1, n2])
    assert status.code == DEGRADED and "heartbeat on n2 believes it holds n1's" in \
        status.problems[0]
    (phantom,), remotes = converge_issues(c, [n1, n2])
    assert phantom.key == "phantom n2" and phantom.patience == 2 * c.timings.deadtime.ms / 1000
    phantom.repair()  # type: ignore[misc]
    assert remotes["n2"].commands == detached("systemctl restart heartbeat.service")
    # while a node still lists the one that left, a restart would bring the claim back
    n1.strangers = {"n3": "dead"}
    assert [i.key for i in converge_issues(c, [n1, n2])[0]] == ["stranger n3"]
    n2.resources = "none"
    n1.strangers = {}
    assert converge_issues(c, [n1, n2])[0] == [] and assess(c, [n1, n2]).code == HEALTHY


@pytest.mark.parametrize(("routes", "gateway"), [
    ("default via 10.9.0.1 dev eth0 proto static metric 100 \n"
     "default via 192.168.1.254 dev eth1 metric 200 \n", "10.9.0.1"),  # the first listed
    ("default dev eth1 scope link \n", None),  # a default route with no gateway
    ("", None),
])
def test_the_probe_reads_the_gateway_ip_route_lists_first(tmp_path, routes: str,
                                                          gateway: str | None) -> None:
    fake = tmp_path / "ip"  # `ip -4 route show default` as it prints
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{routes}'\n")
    fake.chmod(0o755)
    script = "p() { printf '%s\\t%s\\n' \"$1\" \"$2\"; }\n" + supervision.PROBE
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    assert parse(out).gateway == (gateway or "")


def test_guard_steps_out_before_a_peer_can_declare_its_node_dead() -> None:
    hb = "/usr/libexec/heartbeat/heartbeat"

    def guard(**timings: object) -> str:
        return supervision.render(cluster(**timings), "n1", "10.9.0.1", hb)["guard"].content

    # deadtime 5, keepalive 1: out after 2.5 s of silence, before the peer's verdict at 4 s
    assert "EARLY=250\n" in guard() and "SILENCE=200\n" in guard()
    assert "EARLY=2750\n" in guard(deadtime=30)
    # deadtime 1 leaves no room: heartbeat's own verdict only
    assert "EARLY=0\n" in guard(deadtime=1) and "SILENCE=100\n" in guard(deadtime=1)


def test_three_node_warning() -> None:
    from hbdeploy.config import warnings

    assert not warnings(cluster(ping="10.9.0.254"))
    (warning,) = warnings(cluster(nodes={"n1": "10.9.0.1", "n2": "10.9.0.2", "n3": "10.9.0.3"},
                                  ping="10.9.0.254"))
    assert "built for two" in warning
    (warning,) = warnings(cluster())
    assert "no `ping` address" in warning and "default gateway" in warning


def test_host_facts_default_is_not_running() -> None:
    assert not HostFacts().running and not HostFacts().installed


def test_timings_known_to_cost_long_outages_are_warned_about() -> None:
    from hbdeploy.config import warnings

    (short,) = warnings(cluster(ping="10.9.0.254", deadtime=1))
    assert "deadtime 1s leaves hbdeploy-guard no time" in short and "10.7 s" in short
    (long,) = warnings(cluster(ping="10.9.0.254", deadtime=30))
    assert "deadtime 30s: a failover leaves the floating IP unanswered" in long
    assert not warnings(cluster(ping="10.9.0.254", deadtime=4))  # 1 s keepalive + 3 s


def test_a_no_change_deploy_is_done_by_the_facts_probe_when_all_is_right() -> None:
    from hbdeploy import facts
    from hbdeploy.converge import right_at_first_sight
    from hbdeploy.status import parse_view
    from hbdeploy.targets import Target

    c = cluster()
    targets = [Target(n.name, n, FakeRemote()) for n in c.nodes]  # type: ignore[arg-type]
    n1 = facts.parse("view\thb up\nview\tpeer n2 active\nview\taddr 10.9.0.1\n"
                     "view\taddr 10.9.0.100\nannounced\t10.9.0.100\n")
    n2 = facts.parse("view\thb up\nview\tpeer n1 active\nview\taddr 10.9.0.2\n"
                     "answers\t10.9.0.100 yes\n")
    assert n1.announced == ["10.9.0.100"] and n2.answers == {"10.9.0.100": True}
    views = [parse_view(c, "n1", "n1", "\n".join(n1.view)),
             parse_view(c, "n2", "n2", "\n".join(n2.view))]
    answers = {"n1": n1.answers, "n2": n2.answers}
    assert right_at_first_sight(c, targets, views, answers) == {"10.9.0.100": ["n1"]}
    # the IP silent from its peer, a peer not active, the IP away: converge must poll
    assert right_at_first_sight(c, targets, views, {"n2": {"10.9.0.100": False}}) is None
    views[1].peers["n1"] = "dead"
    assert right_at_first_sight(c, targets, views, answers) is None
    views[1].peers["n1"] = "active"
    views[0].floating, views[0].holds = [], []
    views[1].floating, views[1].holds = ["10.9.0.100"], ["n1"]
    assert right_at_first_sight(c, targets, views, {"n1": {"10.9.0.100": True}}) is None
    # --check announces nothing; a deploy's probe announces and pings
    assert "announced" in facts.probe(c, "n1", announce=True)
    assert "[ no = yes ]" in facts.probe(c, "n1", announce=False)
    assert "__" not in facts.probe(c, "n1", announce=True) + facts.probe()
    # the deploy judges by the peers' states: no question per media link (status asks)
    from hbdeploy import status
    assert "hblinkstatus" in status.probe(c, "n1")
    assert "for l in ; do" in facts.probe(c, "n1") and "for l in eth0; do" in status.probe(c, "n1")
    # heartbeat's presence for the floating IPs' ping: its pid file, no cl_status call
    assert facts.probe(c, "n1").count("cl_status hbstatus") == 1  # the view's own


def test_nonlocal_bind_writes_hbdeploys_sysctl_file_and_removes_it_when_turned_off() -> None:
    on, off = cluster(nonlocal_bind=True), cluster()
    node = on.node("n1")
    facts = parse(PROBE_OUTPUT + "\nnonlocal_bind\t0")
    assert plan_host("h", node, facts, on).sysctl == "write"
    assert plan_host("h", node, facts, off).sysctl == ""  # not ours: left alone
    facts = parse(PROBE_OUTPUT + f"\nnonlocal_bind\t1\nsha_sysctl\t{sha256(sysctl.CONTENT)}")
    assert plan_host("h", node, facts, on).sysctl == ""  # in place and in force
    assert plan_host("h", node, facts, off).sysctl == "remove"
    facts.nonlocal_bind = "0"  # the file, but not in force (sysctl -w by hand since)
    assert plan_host("h", node, facts, on).sysctl == "write"


def test_nonlocal_bind_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as err:
        cluster(nonlocal_bind="yes please")
    assert "nonlocal_bind: 'yes please' is not valid; expected true or false" in str(err.value)


def _waker_program(guard: str) -> str:
    """The perl program of the guard's waker, as rendered."""
    start = guard.index("perl -e '") + len("perl -e '")
    return guard[start:guard.index("' ", start)]


def test_the_waker_signals_heartbeat_and_nothing_else(tmp_path) -> None:
    """The waker, run here against a stand-in: a process that counts the SIGCHLDs it gets.
    It signals the pid in the pid file only while that pid runs the named executable."""
    hb = "/usr/libexec/heartbeat/heartbeat"
    guard = supervision.render(cluster(), "n1", "10.9.0.1", hb)["guard"].content
    assert f"{layout.PIDFILE} {hb} {supervision.WAKE_MS} &" in guard
    program = _waker_program(guard)
    counter = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys\n"
         "n = 0\n"
         "def got(*_):\n    global n\n    n += 1\n"
         "signal.signal(signal.SIGCHLD, got)\n"
         "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
         "sys.stdin.readline(); print(n)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert counter.stdout.readline() == "ready\n"
    pidfile = tmp_path / "heartbeat.pid"
    pidfile.write_text(f"{counter.pid}\n")
    exe = os.path.realpath(f"/proc/{counter.pid}/exe")

    def run(named: str, seconds: float = 1.0) -> str:
        waker = subprocess.Popen(["perl", "-e", program, str(pidfile), named, "50"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            waker.wait(seconds)
        except subprocess.TimeoutExpired:
            waker.kill()
        return waker.communicate()[0]

    assert run("/usr/libexec/heartbeat/heartbeat") == ""  # another program: left alone
    said = run(exe)
    counter.stdin.write("\n")
    counter.stdin.flush()
    got = int(counter.stdout.readline())
    counter.wait(5)
    assert said == f"waking heartbeat (pid {counter.pid}) every 50 ms\n"
    assert 10 <= got <= 25, got  # 1 s at 50 ms


def test_a_stopped_member_starts_before_the_holder_a_joining_node_after() -> None:
    """The holder needs an updated peer to hand over to: a member whose heartbeat is down
    but which the running nodes list starts first; a node they do not list (joining) last."""
    from types import SimpleNamespace

    from hbdeploy.plan import HostPlan
    from hbdeploy.rollout import Rollout
    from hbdeploy.targets import Target

    c = cluster(nodes={"n1": "10.9.0.1", "n2": "10.9.0.2", "n3": "10.9.0.3"})
    holder = parse(PROBE_OUTPUT + "\nview\tpeer n2 dead\nview\tpeer n3 unknown")
    stopped = {name: parse(PROBE_OUTPUT.replace("hb_active\tactive", "hb_active\tinactive")
                           .replace("addr\teth0 10.9.0.100", "")) for name in ("n2", "n3")}
    plans = {"n1": HostPlan("n1", c.node("n1"), holder, {}, changed_files=["haresources"],
                            floating_ips=("10.9.0.100",)),
             **{n: HostPlan(n, c.node(n), f, {}, changed_files=["haresources"])
                for n, f in stopped.items()}}
    targets = [Target(n.name, n, FakeRemote()) for n in c.nodes]  # type: ignore[arg-type]
    run = SimpleNamespace(cluster=c, targets=targets, plans=plans, results={}, pushed={},
                          staged={}, applied={}, stamp="", say=print, out=print)
    order = Rollout(run).restart_order(plans)  # type: ignore[arg-type]
    assert [t.node.name for t in order] == ["n2", "n1", "n3"]
