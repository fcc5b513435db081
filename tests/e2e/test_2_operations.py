"""Day two on a cluster serving traffic: rolling updates, standby/takeover, status codes,
rollback, bootstrap of a hot spare and decommission, the failover drill."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.demo import http_name
from hbdeploy.lab.outage import HolderWatch, HttpProbe

from .conftest import (
    FAILING_RESOURCE,
    FLOATING_IP,
    LAB_CLUSTER,
    LOCKDOWN,
    UNLOCK,
    cli,
    poll,
    ssh,
    variant,
)

NODES = ("haproxy1", "haproxy2")
SECOND_IP = "10.213.0.101"
FILES = "sha256sum /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys"
BACKUPS = "/etc/ha.d/.hbdeploy"


def status(lab: Lab, cluster: Path = LAB_CLUSTER, hosts: str | None = None):
    result = cli(lab, "status", "--json", "--cluster", str(cluster), hosts=hosts)
    return result.returncode, json.loads(result.stdout)


def traffic_to(ip: str) -> HttpProbe:
    """25 requests a second, each given 4 intervals to answer."""
    return HttpProbe(ip, interval=0.04, timeout=0.16)


@pytest.fixture(scope="module")
def serving(lab: Lab) -> Lab:
    """haproxy1 and haproxy2 serving the floating IP from examples/lab.yml, healthy."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: status(lab)[0] == 0, 60)
    return lab


def test_rolling_update_of_timings_and_password_loses_no_request(serving: Lab,
                                                                  tmp_path: Path) -> None:
    lab = serving
    changed = variant(tmp_path, "c.yml", ("warntime: 3", "warntime: 4"),
                      ("lab-only-not-a-secret", "rotated-lab-password"))
    pids = {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout for n in NODES}
    with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
        result = cli(lab, "deploy", cluster=changed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("password rotation 3/3") == 2  # then ha.cf, by reloads:
    assert result.stdout.count("reloading heartbeat") == 2
    assert "rotated-lab-password" not in result.stdout + result.stderr
    assert traffic.achieved_rate >= 20, traffic.achieved_rate
    assert traffic.failures == 0, f"{traffic.failures} of {len(traffic.answers)} failed"
    assert traffic.servers() == {"haproxy1"} and watch.max_holders == 1
    # A reload keeps the daemon: same PIDs, new files.
    assert {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout
            for n in NODES} == pids
    assert "rotated-lab-password" in ssh(lab, "haproxy2", "cat /etc/ha.d/authkeys").stdout
    poll(lambda: status(lab, changed)[0] == 0, 30)


# What heartbeat logs when nodes stop hearing each other (or hear a bad key). Not "lost
# packet(s)": heartbeat retransmits those (a CI run under load had "No pkts missing" after
# a re-read); they are counted and printed.
TROUBLE = ("Late heartbeat", "is dead", "dead.", "partition", "failed authentication",
           "Both machines own", "restart", "No one owns")


def journal_since(lab: Lab, node: str, since: str) -> list[str]:
    """heartbeat's journal lines since ``since`` (bytes that are not UTF-8 replaced: a CI
    run found some in a line heartbeat logged)."""
    out = subprocess.run(lab.ssh_command(
        node, f"journalctl -u heartbeat --since=@{since} -o cat --no-pager"),
        capture_output=True, timeout=60, check=True).stdout
    return out.decode("utf-8", "replace").splitlines()


def test_a_password_change_rotates_the_key_with_no_window(serving: Lab, tmp_path: Path
                                                          ) -> None:
    """Both keys on every node, then signing with the new, then the old dropped: no request
    lost and nothing in any node's heartbeat log that says a node missed another; there and
    back (the second rotation takes the index the first left free)."""
    lab = serving
    assert cli(lab, "deploy").returncode == 0  # examples/lab.yml (the test before changed it)
    rotated = variant(tmp_path, "rotated.yml",
                      ("lab-only-not-a-secret", "another-lab-password-for-rotation"))
    pids = {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout for n in NODES}
    for number, (cluster, index) in enumerate(((rotated, "2"), (LAB_CLUSTER, "1"))):
        since = {n: ssh(lab, n, "date +%s.%N").stdout.strip() for n in NODES}
        with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
            result = cli(lab, "deploy", cluster=cluster)
        assert result.returncode == 0, result.stdout + result.stderr
        for step in ("1/3: the new key added as key", "2/3: signing with the new key",
                     "3/3: the old key dropped"):
            assert result.stdout.count(step) == 2, result.stdout
        assert "reloading heartbeat" not in result.stdout  # the re-reads were all it took
        for node in NODES:  # nothing staged left behind (the key's input file included)
            assert "hbdeploy-new" not in ssh(lab, node, "ls -A /etc/ha.d").stdout
        keys = {n: ssh(lab, n, "grep -v '^#' /etc/ha.d/authkeys").stdout.split("\n")[0]
                for n in NODES}
        assert keys == {n: f"auth {index}" for n in NODES}, keys
        logs = {n: journal_since(lab, n, since[n]) for n in NODES}
        trouble = {n: [line for line in logs[n] if any(word in line for word in TROUBLE)]
                   for n in NODES}
        assert trouble == {n: [] for n in NODES}, trouble
        lost = sum("lost packet" in line for n in NODES for line in logs[n])
        assert traffic.failures == 0, f"{traffic.failures} of {len(traffic.answers)} failed"
        assert traffic.servers() == {"haproxy1"} and watch.max_holders == 1
        print(f"rotation {number + 1}: 0 failed of {len(traffic.answers)} requests, "
              f"{result.stdout.count('password rotation')} pass lines, {lost} lost-packet "
              "lines")
        again = cli(lab, "deploy", cluster=cluster)  # done: nothing left to do
        assert "remote commands: haproxy1 1, haproxy2 1" in again.stdout, again.stdout
    assert {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout
            for n in NODES} == pids


# examples/lab-fast.yml's timings: deadtime 1 s, so a second of silence shows.
FAST = (("keepalive: 1", "keepalive: 200ms"), ("warntime: 3", "warntime: 600ms"),
        ("deadtime: 5", "deadtime: 1"))
PORT_695 = ("initdead: 10", "initdead: 10\nudpport: 695")
PING_NODE = "10.213.0.1:"  # the lab's bridge, ipfail's ping node: its lines are not a peer's
REEXEC = ("Heartbeat restart triggered", "Performing heartbeat restart exec")


@pytest.fixture(scope="class")
def locked_down_fast(serving: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Both nodes under an INPUT policy of DROP, on lab.yml with lab-fast's timings (the
    cluster file, yielded), for the tests of one class; then lab.yml and ACCEPT again."""
    lab = serving
    fast = variant(tmp_path_factory.mktemp("fast"), "fast.yml", *FAST)
    for node in NODES:
        ssh(lab, node, LOCKDOWN)
    try:
        result = cli(lab, "deploy", cluster=fast)
        assert result.returncode == 0, result.stdout + result.stderr
        poll(lambda: status(lab, fast)[0] == 0, 30)
        yield fast
    finally:
        for node in NODES:
            ssh(lab, node, UNLOCK, check=False)
    assert cli(lab, "deploy").returncode == 0


def outside_own_reexec(lines: list[str]) -> list[str]:
    """A node's heartbeat journal without what it logged while it stopped its own core
    processes for a re-exec ("killing HB…" to "Performing heartbeat restart exec"): its
    readers gone, it may log its links dead, and cancels any takeover ("shutdown in
    progress"; one core process took 1.1 s to exit, a run of 2026-12-07). Its peers' view
    of it is in their journals."""
    kept, stopping = [], False
    for line in lines:
        if "killing HB" in line:
            stopping = True
        elif REEXEC[1] in line:
            stopping = False
        elif not stopping:
            kept.append(line)
    return kept


def heartbeat_ports(lab: Lab, node: str) -> list[str]:
    """The UDP ports hbdeploy's iptables chain lets in on ``node``."""
    return re.findall(r"--dport (\d+)", ssh(lab, node, "iptables -S HBDEPLOY").stdout)


# A process holding UDP port 695 on a node (without SO_REUSEPORT): heartbeat cannot bind it.
TAKE_695 = ("systemd-run --unit=hb-port --collect -q python3 -c 'import socket, time; "
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"0.0.0.0\", 695)); "
            "time.sleep(600)'")


class TestMediaChangeUnderInputDrop:
    """heartbeat's media changed under an INPUT policy of DROP, at lab-fast's timings (one
    lockdown for both tests: they leave the cluster as they found it)."""

    def test_a_new_udpport_is_read_by_both_nodes_at_once(self, locked_down_fast: Path,
                                                             serving: Lab, tmp_path: Path) -> None:
        """A new udpport (a change of heartbeat's media): one node at a time, the first node
        re-read listened on the new port alone, declared its peer dead after deadtime and took
        the floating IP: both held it (seen in the lab, 2026-12-05). Both nodes now re-read
        ha.cf at once. And under an INPUT policy of DROP the new firewall rules alone cut the
        nodes off from each other from the rules' change to the re-read (at deadtime 1 s each
        declared the other dead, 2026-12-07): the port heartbeat runs on stays let in until
        both have re-read ha.cf, then goes. No request lost, one holder, nothing in either
        journal that says a node missed the other; there and back, at lab-fast's timings."""
        lab, fast = serving, locked_down_fast
        moved = variant(tmp_path, "port.yml", *FAST, PORT_695)
        check = cli(lab, "deploy", "--check", cluster=moved)
        assert check.stdout.count("heartbeat's present media stay let in") == 2, check.stdout
        pids = {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout for n in NODES}
        for cluster, port in ((moved, "695"), (fast, "694")):
            since = {n: ssh(lab, n, "date +%s.%N").stdout.strip() for n in NODES}
            with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
                result = cli(lab, "deploy", cluster=cluster)
            said = result.stdout + result.stderr
            assert result.returncode == 0, said
            assert "at once: ha.cf's media change" in said, said
            assert said.count("heartbeat's present media still let in") == 2, said
            assert said.count("heartbeat's previous media no longer let in") == 2, said
            for node in NODES:
                assert f"udpport {port}" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
                assert ssh(lab, node, "cl_status hbparameter -p udpport").stdout.strip() == port
                assert heartbeat_ports(lab, node) == [port]
            logs = {n: journal_since(lab, n, since[n]) for n in NODES}
            trouble = {n: [line for line in outside_own_reexec(logs[n])
                           if any(word in line for word in TROUBLE)
                           and not any(word in line for word in (*REEXEC, PING_NODE))]
                       for n in NODES}
            assert trouble == {n: [] for n in NODES}, trouble
            assert all(any(REEXEC[1] in line for line in logs[n]) for n in NODES), logs
            assert traffic.failures == 0, f"{traffic.failures} of {len(traffic.answers)} failed"
            assert traffic.servers() == {"haproxy1"} and watch.max_holders == 1
            assert status(lab, cluster)[0] == 0
        assert {n: ssh(lab, n, "systemctl show -p MainPID --value heartbeat").stdout
                for n in NODES} == pids  # reloads: the daemons kept


    def test_a_media_change_heartbeat_cannot_take_is_undone_on_every_node_at_once(
                self, locked_down_fast: Path, serving: Lab, tmp_path: Path) -> None:
        """udpport 695 is taken on haproxy2: heartbeat there cannot bind it when it re-reads
        ha.cf. The previous ha.cf goes back on both nodes and both re-read it at once (one at a
        time, the first would hear no peer); the firewall still lets the previous port in, so
        under DROP the nodes hear each other again; the floating IP never moves. The next deploy
        of the previous file takes the new port out of the firewall."""
        lab, fast = serving, locked_down_fast
        moved = variant(tmp_path, "port.yml", *FAST, PORT_695)
        ssh(lab, "haproxy2", TAKE_695)
        try:
            poll(lambda: ":695 " in ssh(lab, "haproxy2", "ss -uln").stdout, 10)
            with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
                result = cli(lab, "deploy", cluster=moved)
        finally:
            ssh(lab, "haproxy2", "systemctl stop hb-port", check=False)
        said = result.stdout + result.stderr
        assert result.returncode == 1, said
        assert "Can't bind (EADDRINUSE)" in said, said
        assert "reloading heartbeat on haproxy1, haproxy2 at once: the previous media" in said, said
        assert "previous files restored on every host" in said, said
        # The rollback awaits each re-exec ("Configuration validated"), not heartbeat's API
        # coming up after it: a cl_status at once was refused once in 4 runs.
        poll(lambda: status(lab, fast)[0] == 0, 30)
        for node in NODES:
            assert "\nudpport 694\n" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
            assert ssh(lab, node, "cl_status hbparameter -p udpport").stdout.strip() == "694"
            assert sorted(heartbeat_ports(lab, node)) == ["694", "695"]
        assert traffic.failures == 0, f"{traffic.failures} of {len(traffic.answers)} failed"
        assert traffic.servers() == {"haproxy1"} and watch.max_holders == 1
        again = cli(lab, "deploy", cluster=fast)
        assert again.returncode == 0, again.stdout + again.stderr
        assert all(heartbeat_ports(lab, node) == ["694"] for node in NODES)


def test_a_change_all_running_nodes_must_take_at_once_refuses_a_run_without_one(
        serving: Lab, tmp_path: Path) -> None:
    """A new udpport or a new password given to haproxy1 alone (-H haproxy1) while
    haproxy2 runs: haproxy1 would stop hearing haproxy2 and, after deadtime, both would
    hold the floating IP. Refused before any change (both used to go through: their
    checks only looked when two running nodes were in the run)."""
    lab = serving
    assert cli(lab, "deploy").returncode == 0  # examples/lab.yml
    before = ssh(lab, "haproxy1", FILES).stdout
    for name, change in (("port.yml", ("warntime: 3", "warntime: 3\nudpport: 695")),
                         ("pw.yml", ("lab-only-not-a-secret", "a-password-for-one-node"))):
        refused = cli(lab, "deploy", cluster=variant(tmp_path, name, change), hosts="haproxy1")
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "no host was changed" in said, said
        assert "haproxy2 runs heartbeat but is not in this run" in said, said
        assert ssh(lab, "haproxy1", FILES).stdout == before
    assert status(lab)[0] == 0


# A service bound to the floating IP itself (not 0.0.0.0), as haproxy's `bind VIP:port`:
# it answers with its node's name on port 8080.
BOUND = ("systemd-run --unit=hb-bound --collect -q python3 -c '"
         "import socket; n = socket.gethostname().encode(); s = socket.socket(); "
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         "s.bind((\"10.213.0.100\", 8080)); s.listen(16)\n"
         "while True:\n c, _ = s.accept(); c.recv(4096); "
         "c.sendall(b\"HTTP/1.0 200 OK\\r\\n\\r\\n\" + n + b\"\\n\"); c.close()'")


def bound_name() -> str | None:
    try:
        with urllib.request.urlopen(f"http://{FLOATING_IP}:8080/", timeout=0.5) as response:
            return response.read().decode().strip()
    except OSError:
        return None


def test_nonlocal_bind_lets_the_spare_bind_the_floating_ip_before_it_holds_it(
        serving: Lab, tmp_path: Path) -> None:
    lab = serving
    active = "systemctl is-active hb-bound; systemctl show -p MainPID --value hb-bound"

    def bound_pid(node: str) -> str | None:
        out = ssh(lab, node, active, check=False).stdout.split()
        return out[1] if out and out[0] == "active" else None

    # Without it the spare's service cannot start: the address is not the node's.
    ssh(lab, "haproxy2", BOUND)
    poll(lambda: "Cannot assign requested address" in ssh(
        lab, "haproxy2", "journalctl -u hb-bound -o cat", check=False).stdout, 10)
    assert bound_pid("haproxy2") is None
    on = variant(tmp_path, "on.yml", ("ping: 10.213.0.1", "ping: 10.213.0.1\nnonlocal_bind: true"))
    check = cli(lab, "deploy", "--check", cluster=on)
    assert "would set net.ipv4.ip_nonlocal_bind = 1" in check.stdout, check.stdout
    assert "net.ipv4.ip_nonlocal_bind is off here" in check.stdout
    result = cli(lab, "deploy", cluster=on)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("net.ipv4.ip_nonlocal_bind = 1 in force") == 2
    for node in NODES:
        ssh(lab, node, f"systemctl stop hb-bound 2>/dev/null; {BOUND}")
    for node in NODES:
        poll(lambda node=node: bound_pid(node), 10)
    pids = {n: bound_pid(n) for n in NODES}
    assert bound_name() == "haproxy1"
    try:
        stop = cli(lab, "standby", "haproxy1", "--cluster", str(on), hosts=None)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        poll(lambda: bound_name() == "haproxy2", 30)  # the spare's service, not restarted
        assert {n: bound_pid(n) for n in NODES} == pids
    finally:
        back = cli(lab, "takeover", "haproxy1", "--cluster", str(on), hosts=None)
        assert back.returncode == 0, back.stdout + back.stderr
        for node in NODES:
            ssh(lab, node, "systemctl stop hb-bound 2>/dev/null || true")
    assert cli(lab, "deploy", cluster=on).stdout.count("nonlocal_bind") == 0  # in place: quiet
    off = cli(lab, "deploy")  # nonlocal_bind off again: hbdeploy's file goes, the value too
    assert off.returncode == 0 and off.stdout.count("removed /etc/sysctl.d/") == 2, off.stdout
    for node in NODES:
        assert ssh(lab, node, "cat /proc/sys/net/ipv4/ip_nonlocal_bind; "
                   "ls /etc/sysctl.d").stdout.split()[0] == "0"
        assert "hbdeploy" not in ssh(lab, node, "ls /etc/sysctl.d").stdout


def test_rolling_update_of_haresources(serving: Lab, tmp_path: Path) -> None:
    lab = serving
    two = variant(tmp_path, "two.yml", ("haproxy1: IPaddr::10.213.0.100/24/eth0",
                                        f"haproxy1: [IPaddr::10.213.0.100/24/eth0, "
                                        f"IPaddr::{SECOND_IP}/24/eth0]"))
    with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
        result = cli(lab, "deploy", cluster=two)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "handing haproxy1 over to a peer before its restart" in result.stdout
    assert traffic.achieved_rate >= 15  # unanswered probes wait out their timeout
    assert traffic.failures <= 10, f"{traffic.failures} of {len(traffic.answers)} failed"
    assert watch.max_holders == 1, "two nodes held the floating IP at once"
    assert http_name(FLOATING_IP) == "haproxy1" and http_name(SECOND_IP) == "haproxy1"
    print(f"haresources rolling update: {traffic.failures} failed of {len(traffic.answers)}")
    back = cli(lab, "deploy")  # and back to one IP, rolling too
    assert back.returncode == 0, back.stdout + back.stderr
    assert http_name(SECOND_IP) is None


def test_a_stopped_member_is_started_first_so_the_holder_can_hand_over(serving: Lab,
                                                                        tmp_path: Path) -> None:
    """CI: haproxy2's heartbeat was down (in its own restart) when a haresources change
    began; haproxy1, holding the group, was restarted first with no peer up, and the
    floating IP went down. haproxy2 is a member haproxy1 lists: it starts first."""
    lab = serving
    two = variant(tmp_path, "two.yml", ("haproxy1: IPaddr::10.213.0.100/24/eth0",
                                        f"haproxy1: [IPaddr::10.213.0.100/24/eth0, "
                                        f"IPaddr::{SECOND_IP}/24/eth0]"))
    ssh(lab, "haproxy2", "systemctl stop heartbeat")
    poll(lambda: ssh(lab, "haproxy1", "cl_status nodestatus haproxy2", check=False
                     ).stdout.strip() == "dead", 30)
    with traffic_to(FLOATING_IP) as traffic, HolderWatch(lab, FLOATING_IP) as watch:
        result = cli(lab, "deploy", cluster=two)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    started = said.index("[haproxy2] starting heartbeat")
    assert started < said.index("[haproxy1] handing haproxy1 over to a peer"), said
    assert traffic.failures <= 10, f"{traffic.failures} of {len(traffic.answers)} failed"
    assert watch.max_holders == 1, "two nodes held the floating IP at once"
    assert http_name(FLOATING_IP) == "haproxy1" and http_name(SECOND_IP) == "haproxy1"
    back = cli(lab, "deploy")
    assert back.returncode == 0, back.stdout + back.stderr


def test_standby_and_takeover_round_trip(serving: Lab) -> None:
    lab = serving
    result = cli(lab, "standby", "haproxy1", "--cluster", str(LAB_CLUSTER), hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "standby complete" in result.stdout and "unanswered" in result.stdout
    assert http_name(FLOATING_IP) == "haproxy2"
    result = cli(lab, "takeover", "haproxy1", "--cluster", str(LAB_CLUSTER), hosts=None,
                 tool="fab")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "takeover complete" in result.stdout
    assert http_name(FLOATING_IP) == "haproxy1"


# A standby request for no resources: haproxy2 agrees and waits for haproxy1's "done",
# which haproxy1 never sends (its release of nothing fails, or it ignored its own request).
DROPPED_REQUEST = (". /etc/ha.d/shellfuncs && "
                   "printf 't=ask_resources\\nrsc_hold=none\\ninfo=me\\n' | ha_clustermsg")


def journal_has(lab: Lab, node: str, text: str) -> bool:
    return ssh(lab, node, f"journalctl -u heartbeat -o cat --since=-60s | grep -qF {text!r}",
               check=False).returncode == 0


def drop_a_request(lab: Lab, sender: str, stuck: str) -> None:
    """``sender`` asks a standby that ``stuck`` agrees to, then is killed and comes back
    within deadtime (as after a split brain): ``stuck`` waits on it for heartbeat's hour."""
    pid = ssh(lab, sender, "systemctl show -p MainPID --value heartbeat").stdout
    ssh(lab, sender, DROPPED_REQUEST)
    poll(lambda: journal_has(lab, stuck, f"{sender} wants to go standby [none]"), 10)
    ssh(lab, sender, "kill -9 $(systemctl show -p MainPID --value heartbeat.service)")
    poll(lambda: ssh(lab, sender, "systemctl show -p MainPID --value heartbeat"
                     ).stdout not in ("", "0", pid), 20)
    poll(lambda: journal_has(lab, stuck, f"Heartbeat restart on node {sender}"), 20)


def test_a_standby_exchange_dropped_by_a_restart_is_ended(serving: Lab) -> None:
    """CI (test_4): haproxy1 restarted while haproxy2, holding the group, waited on a standby
    exchange with it; heartbeat made haproxy2 wait an hour (no failback, every hb_takeover
    ignored). Rebuilt here: the exchange is dropped, then haproxy1 is killed and comes back
    within deadtime (as after a split brain), which heartbeat does not cancel it for."""
    lab = serving
    result = cli(lab, "standby", "haproxy1", "--cluster", str(LAB_CLUSTER), hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert http_name(FLOATING_IP) == "haproxy2"
    drop_a_request(lab, "haproxy1", "haproxy2")
    poll(lambda: status(lab)[1]["nodes"][0]["peers"] == {"haproxy2": "active"}, 30)
    ssh(lab, "haproxy1", "/usr/share/heartbeat/hb_takeover local")
    poll(lambda: journal_has(lab, "haproxy2", "seconds left]"), 10)  # ignored: it waits
    assert http_name(FLOATING_IP) == "haproxy2"  # and no failback happened
    poll(lambda: any("standby exchange its peer dropped" in p
                     for p in status(lab)[1]["problems"]), 40)
    with traffic_to(FLOATING_IP) as traffic:
        result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ended it with two standby 'done' messages from haproxy1" in result.stdout
    assert http_name(FLOATING_IP) == "haproxy1"
    outage = traffic.unanswered(traffic.started)
    print(f"failback after the wedge was ended: {outage:.2f}s unanswered "
          f"({traffic.failures} of {len(traffic.answers)} probes)")
    assert outage < 5 and traffic.servers() == {"haproxy1", "haproxy2"}
    assert status(lab)[0] == 0


def test_a_holder_stuck_on_a_dropped_exchange_is_freed_before_it_is_asked(serving: Lab
                                                                          ) -> None:
    """CI (the rollback test): haproxy2, restarted by the deploy seconds after its own
    start, sent ipfail's delayed giveup from its shutdown; haproxy1, holding the group,
    agreed and waited the hour. The handover's hb_standby was ignored, both nodes ended
    up stuck, and the second request crossed the failback the repair set off. The stuck
    node is freed first, and the one request is acted on."""
    lab = serving
    assert http_name(FLOATING_IP) == "haproxy1"
    drop_a_request(lab, "haproxy2", "haproxy1")
    poll(lambda: any("standby exchange its peer dropped" in p
                     for p in status(lab)[1]["problems"]), 40)
    with traffic_to(FLOATING_IP) as traffic:
        result = cli(lab, "standby", "haproxy1", "--cluster", str(LAB_CLUSTER), hosts=None)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "heartbeat on haproxy1 has waited" in said and "ended it" in said, said
    assert "did not act on the standby request" not in said, said
    assert http_name(FLOATING_IP) == "haproxy2"
    assert traffic.failures <= 10, f"{traffic.failures} of {len(traffic.answers)} failed"
    result = cli(lab, "takeover", "haproxy1", "--cluster", str(LAB_CLUSTER), hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert http_name(FLOATING_IP) == "haproxy1"
    poll(lambda: status(lab)[0] == 0, 30)


def test_status_exit_codes(serving: Lab) -> None:
    lab = serving
    code, report = status(lab)
    assert (code, report["status"]) == (0, "healthy")
    assert report["groups"] == {"haproxy1": ["haproxy1"]}
    lab.kill("haproxy2")
    try:
        code, report = status(lab)
        assert (code, report["status"]) == (1, "degraded")
        assert any("haproxy2 is unreachable" in p for p in report["problems"])
    finally:
        lab.start("haproxy2")
    poll(lambda: status(lab)[0] == 0, 90)  # heartbeat and its firewall come back at boot
    block = ("iptables -I INPUT 1 -s {peer} -p udp --dport 694 -j DROP")
    ssh(lab, "haproxy1", block.format(peer="10.213.0.12"))
    ssh(lab, "haproxy2", block.format(peer="10.213.0.11"))
    try:
        poll(lambda: status(lab)[0] == 2, 30)
        code, report = status(lab)
        assert any("split brain" in p for p in report["problems"]), report["problems"]
    finally:
        ssh(lab, "haproxy1", block.format(peer="10.213.0.12").replace("-I INPUT 1", "-D INPUT"))
        ssh(lab, "haproxy2", block.format(peer="10.213.0.11").replace("-I INPUT 1", "-D INPUT"))
    seen: set[str] = set()

    def healed() -> bool:
        code, report = status(lab)
        seen.update(p.split(":")[0] for p in report["problems"])
        return code == 0

    try:
        poll(healed, 60)
    except AssertionError:
        # heartbeat sometimes never gives an orphaned group back by itself after a healed
        # partition (seen in CI); the operator's remedy is a deploy, which adopts it.
        assert "orphaned" in seen, f"not healthy 60s after the partition healed: {seen}"
    print(f"after the partition healed, status saw: {sorted(seen)}")
    settle(lab)
    # A healthy instant can come before heartbeat's own split-brain restart of one side
    # (seen under load: "Heartbeat shutdown in progress" 2 s after the heal, the re-exec 3 s
    # later, that node degraded while it rejoins): healthy again by itself, within a bound.
    poll(lambda: status(lab)[0] == 0, 30)


def settle(lab: Lab) -> None:
    """After a partition heartbeat may still flap or leave the group orphaned for a while:
    a deploy with nothing to change waits for it (and adopts an orphaned group)."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)


def test_an_ipaddr_interface_a_node_lacks_is_refused_before_any_change(
        serving: Lab, tmp_path: Path) -> None:
    lab = serving
    typo = variant(tmp_path, "typo.yml", ("IPaddr::10.213.0.100/24/eth0",
                                          "IPaddr::10.213.0.100/24/eth9"))
    before = {n: ssh(lab, n, FILES).stdout for n in NODES}
    result = cli(lab, "deploy", cluster=typo)
    assert result.returncode != 0 and "no host was changed" in result.stderr
    assert result.stderr.count("interface 'eth9'") == 2  # each host is named
    assert {n: ssh(lab, n, FILES).stdout for n in NODES} == before


def test_rollback_when_the_new_files_do_not_come_up(serving: Lab, tmp_path: Path) -> None:
    lab = serving
    settle(lab)
    for node in NODES:
        ssh(lab, node, FAILING_RESOURCE)
    broken = variant(tmp_path, "broken.yml", ("haproxy1: IPaddr::10.213.0.100/24/eth0",
                                              "haproxy1: [IPaddr::10.213.0.100/24/eth0, "
                                              "hbdeploy-failing]"))
    before = {n: ssh(lab, n, FILES).stdout for n in NODES}
    # Older backups whose mtimes are newer than the file in use (as after a rollback, whose
    # restored file keeps its backup's mtime): the pruning goes by the stamp in the names
    # and keeps the backup this run makes (by mtime it removed it, and the rollback below
    # then removed haresources as a file that "was not there before").
    for node in NODES:
        ssh(lab, node, f"cd {BACKUPS} && rm -f haresources.* && for i in 1 2 3 4 5 6; do "
                       "echo old > haresources.2000010${i}T000000; done && "
                       "touch -d '+1 day' haresources.2000*")
    result = cli(lab, "deploy", cluster=broken)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "journal:" in result.stdout
    assert "previous files" in result.stderr
    assert "there was none before" not in result.stdout, result.stdout
    old = [f"haresources.2000010{i}T000000" for i in range(1, 7)]
    kept = {n: ssh(lab, n, f"ls {BACKUPS} | grep '^haresources[.]'").stdout.split()
            for n in NODES}
    said = f"backups: {kept}\ndeploy said:\n{result.stdout}{result.stderr}"  # a str: not cut
    assert kept["haproxy1"] == old, said  # its haresources was never replaced
    assert kept["haproxy2"][:-1] == old[2:] and kept["haproxy2"][-1] not in old, said
    # haproxy2, restarted first, could not start the group it was handed: said at once, from
    # its journal, not after the handover's timeouts.
    assert "the groups cannot start there: haproxy2: " in result.stderr, (
        result.stdout + result.stderr)
    # ResourceManager's standby request for 30 s after the failed start is cancelled with
    # the rollback (it asked the restored cluster for a standby that wedged a later one).
    assert "[haproxy2] cancelled the standby request" in result.stdout, result.stdout
    # haproxy1 was asked for its group back and the run saw it take it (not assumed): the
    # table's HOLDS is read after the rollout stopped.
    assert "[haproxy1] took haproxy1 back (hb_takeover all)" in result.stdout, said
    assert any(row.split()[:2] == ["haproxy1", "haproxy1"] and row.endswith(FLOATING_IP)
               for row in result.stdout.splitlines()), said
    # and its files, staged for its restart and never put in place, are said unchanged
    assert any(row.split()[:4] == ["haproxy1", "haproxy1", "ok", "unchanged"]
               for row in result.stdout.splitlines()), said
    assert ssh(lab, "haproxy2", "pgrep -f '[R]esourceManager takegroup' || true").stdout == ""
    assert {n: ssh(lab, n, FILES).stdout for n in NODES} == before
    settle(lab)
    assert status(lab)[0] == 0


THREE = ("  haproxy2: 10.213.0.12\n", "  haproxy2: 10.213.0.12\n  haproxy3: 10.213.0.13\n")
FAIL_START = "/etc/systemd/system/heartbeat.service.d/zz-test-fail.conf"


def test_a_bootstrap_that_fails_takes_the_new_node_out_of_the_lists(serving: Lab,
                                                                     tmp_path: Path) -> None:
    """heartbeat cannot start on haproxy3 (a drop-in of this test's): the files are rolled
    back, the pair keeps its floating IP, and the running nodes, which had listed haproxy3
    (hb_addnode) and re-read their old ha.cf, list it no more (hb_delnode)."""
    lab = serving
    settle(lab)
    three = variant(tmp_path, "three.yml", THREE)
    ssh(lab, "haproxy3", f"mkdir -p {FAIL_START.rsplit('/', 1)[0]} && printf "
                         f"'[Service]\\nExecStartPre=/bin/false\\n' > {FAIL_START} && "
                         "systemctl daemon-reload")
    try:
        with HolderWatch(lab, FLOATING_IP) as watch:
            result = cli(lab, "bootstrap", "--cluster", str(three), hosts="haproxy3")
    finally:
        ssh(lab, "haproxy3", f"rm -f {FAIL_START}; systemctl daemon-reload")
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "hb_addnode" in said and "previous files restored on every host" in said, said
    assert "haproxy3 taken out of the running nodes' node lists again" in said, said
    for node in NODES:
        assert "haproxy3" not in ssh(lab, node, "cl_status listnodes").stdout.split(), node
    # stopped and disabled again: the drop-in gone, systemd must not start it ("failed":
    # its last start failed)
    active, enabled = ssh(lab, "haproxy3", "systemctl is-active heartbeat; systemctl "
                                           "is-enabled heartbeat", check=False).stdout.split()
    assert active in ("inactive", "failed") and enabled == "disabled", (active, enabled)
    assert watch.samples and set(watch.samples) == {("haproxy1",)}, "the IP never moved"
    # haproxy3 came and went: haproxy2, holding nothing, must not believe it holds
    # haproxy1's group (it would then take no failover over; the next test's subject)
    claim = ssh(lab, "haproxy2", "cl_status rscstatus").stdout.strip()
    assert claim not in ("all", "foreign"), (claim, said)
    poll(lambda: status(lab)[0] == 0, 60)


def test_bootstrap_a_hot_spare_then_decommission(serving: Lab, tmp_path: Path) -> None:
    lab = serving
    settle(lab)
    three = variant(tmp_path, "three.yml", THREE)
    # The probe waits up to 0.5 s for each answer: a floating IP that goes away never
    # answers, while the install on haproxy3 and heartbeat's restarts (at realtime priority)
    # slow answers on the 2 cores the nodes share (one probe of 0.16 s failed once in a
    # fresh-clone run, no node's heartbeat journal showing any resource action; the
    # HolderWatch below checks from the nodes' namespaces that the IP never moved).
    since = ssh(lab, "haproxy1", "date +%s").stdout.strip()
    with (HttpProbe(FLOATING_IP, interval=0.04, timeout=0.5) as traffic,
          HolderWatch(lab, FLOATING_IP) as watch):
        result = cli(lab, "bootstrap", "--cluster", str(three), hosts="haproxy3")
    assert result.returncode == 0, result.stdout + result.stderr
    # The running nodes listed haproxy3 (hb_addnode) before either re-read ha.cf: a re-exec
    # that asks a peer still on the old node list drops the new node ("Removing node").
    assert "hb_addnode" in result.stdout, result.stdout
    for node in NODES:
        dropped = ssh(lab, node, f"journalctl -u heartbeat --since @{since} -o cat "
                                 "| grep -c 'Removing node' || true").stdout.strip()
        assert dropped == "0", f"{node} dropped a node during the bootstrap"
    assert traffic.failures == 0 and traffic.servers() == {"haproxy1"}, (
        f"unanswered probes sent at {traffic.failed_at()} s of {len(traffic.answers)} "
        f"({traffic.stopped - traffic.started:.1f} s), holders seen {set(watch.samples)}, "
        f"bootstrap said:\n{result.stdout}")
    assert watch.samples and set(watch.samples) == {("haproxy1",)}, "the IP never moved"
    code, report = status(lab, three)
    assert code == 0, report
    assert all(set(n["peers"].values()) == {"active"} and len(n["peers"]) == 2
               for n in report["nodes"])
    # A node missing from a peer's node list for good ("bad node [haproxy3]": a peer that
    # restarted and took its node list from one that did not list it yet); made to happen
    # here with heartbeat's own hb_delnode, haproxy3 stopped meanwhile: a deploy puts it
    # back with hb_addnode.
    ssh(lab, "haproxy3", "systemctl stop heartbeat")
    poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy3", check=False
                     ).stdout.strip() == "dead", 30)
    ssh(lab, "haproxy2", "/usr/share/heartbeat/hb_delnode haproxy3")
    poll(lambda: "haproxy3" not in ssh(lab, "haproxy2", "cl_status listnodes").stdout, 10)
    ssh(lab, "haproxy3", "systemctl start heartbeat")
    repaired = cli(lab, "deploy", cluster=three, hosts="haproxy1,haproxy2,haproxy3")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "from its node list" in repaired.stdout and "hb_addnode haproxy3" in repaired.stdout
    assert status(lab, three)[0] == 0
    result = cli(lab, "decommission", "haproxy3", "--cluster", str(LAB_CLUSTER), hosts=None,
                 tool="fab")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ssh(lab, "haproxy3", "systemctl is-active heartbeat", check=False).stdout.strip() \
        != "active"
    for node in NODES:
        assert "haproxy3" not in ssh(lab, node, "cl_status listnodes").stdout
    poll(lambda: status(lab)[0] == 0, 60)


def _three_without_ping(lab: Lab, tmp_path: Path) -> Path:
    """The pair deployed without `ping` (no ipfail to end a phantom claim by itself), then
    haproxy3 bootstrapped as a third member; returns the two-node file without `ping`."""
    settle(lab)
    noping = variant(tmp_path, "noping.yml", ("ping: 10.213.0.1\n", ""))
    noping3 = variant(tmp_path, "noping3.yml", ("ping: 10.213.0.1\n", ""), THREE)
    result = cli(lab, "deploy", cluster=noping)
    assert result.returncode == 0, result.stdout + result.stderr
    result = cli(lab, "bootstrap", "--cluster", str(noping3), hosts="haproxy3")
    assert result.returncode == 0, result.stdout + result.stderr
    return noping


def _cut_of_haproxy1_is_taken_over(lab: Lab) -> None:
    assert http_name(FLOATING_IP) == "haproxy1"
    lab.cut("haproxy1")
    try:
        poll(lambda: http_name(FLOATING_IP) == "haproxy2", 20, 0.2)  # deadtime 5 s
    finally:
        lab.heal("haproxy1")


def test_a_member_that_left_leaves_no_phantom_claim_and_failover_works(serving: Lab,
                                                                      tmp_path: Path) -> None:
    """heartbeat 3.0.6 takes a node that leaves for a dead one whose resources it now
    holds: after a third member was bootstrapped and decommissioned, haproxy2 (holding
    nothing) believed it held haproxy1's group (`cl_status rscstatus`: all), and a cut of
    haproxy1 was not taken over ("Dead node haproxy1 gave up resources."; 30 s in the
    lab, 40 s in a CI run after a failed bootstrap). Without `ping` no ipfail ends it by
    itself, so it happens every time here. decommission restarts heartbeat there once the
    node is out of every node list; a cut of haproxy1 is then taken over."""
    lab = serving
    try:
        noping = _three_without_ping(lab, tmp_path)
        result = cli(lab, "decommission", "haproxy3", "--cluster", str(noping))
        said = result.stdout + result.stderr
        assert result.returncode == 0, said
        claims = {n: ssh(lab, n, "cl_status rscstatus").stdout.strip() for n in NODES}
        assert claims["haproxy2"] not in ("all", "foreign"), (claims, said)
        _cut_of_haproxy1_is_taken_over(lab)
    finally:
        settle(lab)  # examples/lab.yml again (ipfail), haproxy1 serving


def test_drill(serving: Lab) -> None:
    lab = serving
    refused = cli(lab, "drill", "--cluster", str(LAB_CLUSTER), hosts=None)
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    result = cli(lab, "drill", "--yes", "--cut", "--cluster", str(LAB_CLUSTER), hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drill: group haproxy1: failover" in result.stdout
    assert "back on haproxy1" in result.stdout
    # After the healed cut heartbeat may still move the group once more (a split brain it
    # resolves): the IP must answer from haproxy1 within 30 s, not at this very instant.
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 30)


def test_three_nodes_cut_primary_lands_on_a_spare(serving: Lab, tmp_path: Path) -> None:
    """Last: heartbeat's haresources manager is a two-node design and a three-node cluster may
    need its runbook after this (docs/operations.md); the lab is torn down afterwards."""
    lab = serving
    settle(lab)  # the drill before this healed a partition
    three = variant(tmp_path, "three.yml", THREE)
    result = cli(lab, "bootstrap", "--cluster", str(three), hosts="haproxy3")
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: status(lab, three)[0] == 0, 60)
    lab.cut("haproxy1")
    try:
        poll(lambda: http_name(FLOATING_IP, timeout=0.3) in ("haproxy2", "haproxy3"), 30)
        spares = [n for n in ("haproxy2", "haproxy3")
                  if FLOATING_IP in ssh(lab, n, "ip -4 -o addr").stdout]
        print(f"with three nodes, cutting haproxy1 put the group on {spares}")
    finally:
        lab.heal("haproxy1")

    def members_see_each_other() -> bool:
        _, report = status(lab, three)
        return all(n["heartbeat"] and set(n["peers"].values()) == {"active"}
                   for n in report["nodes"])

    poll(members_see_each_other, 120)
