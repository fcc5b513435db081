"""Partitions, crashes and what a deploy repairs afterwards, measured from outside the nodes
(an HTTP probe of the floating IP every 50 ms, hbdeploy/lab/outage.py).

The cut/heal and kill tests repeat: twice by default, `--partition-loops N` for more
(docs/operations.md gives the figures of 10)."""

from __future__ import annotations

import pytest

from hbdeploy import supervision
from hbdeploy.lab import Lab
from hbdeploy.lab.demo import http_name
from hbdeploy.lab.outage import cut_cycle, heartbeat_whole, holders, kill_cycle
from hbdeploy.layout import RESOURCE_MANAGER

from .conftest import FLOATING_IP, cli, poll, ssh

NODES = ["haproxy1", "haproxy2"]
DEADTIME = 5  # examples/lab.yml
KEEPALIVE = 1
# heartbeat's check every 250 ms, the waker's period, and 0.1 s for a busy lab
VERDICT_LATE = 0.25 + supervision.WAKE_MS / 1000 + 0.1
GROUP_KEY = "IPaddr::10.213.0.100/24/eth0"
RUNTIME_DROPIN = "/run/systemd/system/heartbeat.service.d/zz-test-stop-timeout.conf"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "loop" in metafunc.fixturenames:
        loops = metafunc.config.getoption("partition_loops")
        metafunc.parametrize("loop", range(1, loops + 1), ids=lambda i: f"run{i}")


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Lab:
    """examples/lab.yml on haproxy1 and haproxy2, whole, haproxy1 serving."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)
    return lab


def whole_and_home(lab: Lab) -> None:
    """Between tests: every node back in the cluster and the IP on haproxy1."""
    poll(lambda: heartbeat_whole(lab, NODES), 60, interval=0.5)
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)


def quiet(lab: Lab, seconds: int = 4) -> None:
    """Before a fault is staged behind heartbeat's back: heartbeat (and ipfail) have logged
    nothing but late heartbeats for ``seconds`` on every node. After a restart, ipfail's
    standby exchanges go on for a while and would re-acquire a group released by hand."""
    script = (f"journalctl -u heartbeat --since=-{seconds}s -o cat | "
              "grep -v -e 'Late heartbeat' -e '^-- ' | grep -q . && exit 1 || exit 0")
    poll(lambda: all(ssh(lab, n, script, check=False).returncode == 0 for n in NODES), 60,
         interval=1)


def test_supervision_is_installed(cluster: Lab) -> None:
    lab = cluster
    for node in NODES:
        unit = ssh(lab, node, "systemctl show -p Restart -p TimeoutStopUSec -p SendSIGKILL "
                              "--value heartbeat").stdout.split()
        assert unit == ["always", "30s", "yes"]
        assert ssh(lab, node, "systemctl is-active hbdeploy-guard").stdout.strip() == "active"
    assert 'REFERENCES="10.213.0.1"' in ssh(lab, "haproxy1",
                                            "cat /usr/local/sbin/hbdeploy-guard").stdout


def verdict_after(lab: Lab, node: str, peer: str, since: float) -> float:
    """Seconds from ``since`` (time.time()) to ``node``'s heartbeat declaring ``peer`` dead."""
    journal = ssh(lab, node, f"journalctl -o short-unix --no-pager --since=@{int(since) - 1} "
                             f"| grep -F 'node {peer}: is dead'").stdout
    times = [float(line.split()[0]) - since for line in journal.splitlines()]
    assert [t for t in times if t > 0], journal
    return min(t for t in times if t > 0)


def waker_of(lab: Lab, node: str) -> str:
    """The pid of the guard's waker (its perl child) on ``node``, or ""."""
    script = ("ps -o pid=,comm= --ppid \"$(systemctl show -p MainPID --value hbdeploy-guard)\""
              " | awk '$2 == \"perl\" { print $1 }'")
    return ssh(lab, node, script).stdout.strip()


def guard_said(lab: Lab, node: str, line: str) -> int:
    """How many times hbdeploy-guard's journal on ``node`` has ``line``."""
    return ssh(lab, node, "journalctl -u hbdeploy-guard -o cat --no-pager").stdout.count(line)


def test_the_guard_wakes_heartbeat_and_keeps_waking_it(cluster: Lab) -> None:
    """heartbeat checks its peers for deadtime only when its main loop wakes (and 250 ms have
    passed): the guard's waker sends its master SIGCHLD every 50 ms, and is started again
    when it dies (once every 10 s at most). (That it follows a restarted heartbeat: the
    kill -9 test.)"""
    lab = cluster
    whole_and_home(lab)
    node = "haproxy2"
    heartbeat = ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip()
    poll(lambda: guard_said(lab, node, f"waking heartbeat (pid {heartbeat}) every "
                                       f"{supervision.WAKE_MS} ms"), 10, interval=0.5)
    waker = waker_of(lab, node)
    assert waker
    quiet(lab)  # heartbeat logged nothing for 4 s: not busy with a (re)start or handover
    # The wakes reach heartbeat: its master's context switches over 1 s, then over 1 s with
    # the waker stopped, up to 15 times. A heartbeat busy with something else wakes anyway
    # (34 switches a second once in CI) and a wake then adds none: one quiet pair suffices.
    pairs = ssh(lab, node, f"""
        switches() {{
          awk '/ctxt_switches/ {{ n += $2 }} END {{ print n }}' /proc/{heartbeat}/status
        }}
        for i in $(seq 1 15); do
          a=$(switches); sleep 1; b=$(switches)
          kill -STOP {waker}; sleep 1; c=$(switches); kill -CONT {waker}
          echo $((b - a)) $((c - b))
          [ $(((b - a) - (c - b))) -ge {1000 // supervision.WAKE_MS // 2} ] && break
        done""").stdout.splitlines()
    rates = [tuple(map(int, pair.split())) for pair in pairs]
    print(f"heartbeat's master, context switches/s (woken, without the waker): {rates}")
    assert any(woken - unwoken >= 1000 // supervision.WAKE_MS // 2
               for woken, unwoken in rates), rates
    said = guard_said(lab, node, f"waking heartbeat (pid {heartbeat})")
    ssh(lab, node, f"kill -KILL {waker}")
    poll(lambda: waker_of(lab, node) not in ("", waker), 20, interval=0.5)  # 10 s apart at most
    assert guard_said(lab, node, f"the waker (pid {waker}) exited")
    poll(lambda: guard_said(lab, node, f"waking heartbeat (pid {heartbeat})") > said, 5)


def test_cut_of_the_holder_fails_over_and_heals_in_under_3s(cluster: Lab, loop: int) -> None:
    """Odd runs cut for deadtime + 3 s; even runs for deadtime + 0.5 s, a heal that lands
    just after heartbeat declared the peer dead (its split-brain restart, without the
    guard stepping out before deadtime)."""
    lab = cluster
    whole_and_home(lab)
    cut_for = DEADTIME + (3 if loop % 2 else 0.5)
    cycle = cut_cycle(lab, FLOATING_IP, NODES, "haproxy1", cut_for, DEADTIME)
    verdict = verdict_after(lab, "haproxy2", "haproxy1", cycle.at)
    print(f"run {loop}, cut {cut_for}s: {cycle}, haproxy2's verdict after {verdict:.2f} s")
    # heartbeat declares the peer dead deadtime after the last heartbeat it heard (up to a
    # keepalive before the cut), checking every 250 ms, woken every WAKE_MS by the guard:
    # without the waker its verdict came up to 0.75 s after deadtime.
    assert DEADTIME - KEEPALIVE - 0.1 <= verdict <= DEADTIME + VERDICT_LATE, verdict
    assert cycle.failover is not None and cycle.failover <= DEADTIME + 1, cycle
    assert cycle.whole_after is not None, "heartbeat did not run again on every node"
    assert cycle.unanswered_repair <= 3, cycle
    assert cycle.holders_after == ["haproxy1"], cycle  # auto_failback on
    log = ssh(lab, "haproxy1", "journalctl -u hbdeploy-guard --since=-60s -o cat").stdout
    assert "and no peer (haproxy2) answered ping for" in log  # before deadtime
    assert "starting heartbeat (it rejoins as a new member)" in log
    restarts = ssh(lab, "haproxy2", "journalctl -u heartbeat --since=-60s -o cat").stdout
    assert "returning after partition" not in restarts, "a split brain on the serving node"


def test_cut_of_the_spare_never_moves_the_ip(cluster: Lab) -> None:
    lab = cluster
    whole_and_home(lab)
    cycle = cut_cycle(lab, FLOATING_IP, NODES, "haproxy2", DEADTIME + 3, DEADTIME)
    print(cycle)
    assert cycle.unanswered_fault == 0 and cycle.unanswered_repair == 0, cycle
    assert cycle.whole_after is not None and cycle.holders_after == ["haproxy1"], cycle


def test_kill_9_of_heartbeat_is_undone(cluster: Lab, loop: int) -> None:
    lab = cluster
    whole_and_home(lab)
    node = NODES[loop % 2]  # the holder, then the spare, ...
    before = ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip()
    cycle = kill_cycle(lab, FLOATING_IP, NODES, node, DEADTIME)
    print(f"run {loop}: {cycle}")
    assert cycle.whole_after is not None and cycle.whole_after <= 15, cycle
    after = ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip()
    assert after != before
    poll(lambda: guard_said(lab, node, f"waking heartbeat (pid {after})"), 5, interval=0.5)
    assert cycle.unanswered_repair <= 3 and cycle.holders_after == ["haproxy1"], cycle


def test_a_stop_that_hangs_is_ended_and_heartbeat_comes_back(cluster: Lab) -> None:
    """heartbeat once ignored `heartbeat -k` for good after a reload (a CI run: `systemctl
    restart` hung on a 30 min stop timeout). A frozen heartbeat stands in for it."""
    lab = cluster
    whole_and_home(lab)
    pid = ssh(lab, "haproxy2", "systemctl show -p MainPID --value heartbeat").stdout.strip()
    # The stop timeout hbdeploy sets (30 s, test_supervision_is_installed) shortened for this
    # test by a runtime drop-in: what happens when it runs out is the same, 25 s sooner.
    ssh(lab, "haproxy2", f"mkdir -p {RUNTIME_DROPIN.rsplit('/', 1)[0]} && printf "
                         f"'[Service]\\nTimeoutStopSec=5s\\n' > {RUNTIME_DROPIN} && "
                         "systemctl daemon-reload")
    try:
        assert ssh(lab, "haproxy2", "systemctl show -p TimeoutStopUSec --value heartbeat"
                   ).stdout.strip() == "5s"
        ssh(lab, "haproxy2", f"kill -STOP {pid}")
        restart = ssh(lab, "haproxy2", "systemctl restart heartbeat.service", check=False,
                      timeout=150)
    finally:
        ssh(lab, "haproxy2", f"rm -f {RUNTIME_DROPIN} && systemctl daemon-reload")
    assert restart.returncode == 0, restart.stderr
    log = ssh(lab, "haproxy2", "journalctl -u heartbeat --since=-120s -o cat").stdout
    assert "heartbeat did not stop in time and was killed" in log
    assert ssh(lab, "haproxy2", "systemctl show -p MainPID --value heartbeat").stdout.strip() \
        not in ("0", pid)
    whole_and_home(lab)
    assert holders(FLOATING_IP, NODES) == ["haproxy1"]


def repaired(lab: Lab, what: str) -> str:
    """A deploy with nothing to change: exit 0, and it says it repaired ``what``."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"repaired: {what}" in result.stdout, result.stdout
    assert holders(FLOATING_IP, NODES) == ["haproxy1"]
    assert http_name(FLOATING_IP) == "haproxy1"
    return result.stdout


def test_no_change_deploy_adopts_an_orphaned_group(cluster: Lab) -> None:
    lab = cluster
    whole_and_home(lab)
    quiet(lab)
    ssh(lab, "haproxy1", f"{RESOURCE_MANAGER} givegroup {GROUP_KEY}")  # heartbeat unaware
    assert holders(FLOATING_IP, NODES) == []
    repaired(lab, "group haproxy1 was held by no node: hb_takeover local and "
                  "ResourceManager takegroup on haproxy1")


def test_no_change_deploy_releases_a_group_held_twice(cluster: Lab) -> None:
    lab = cluster
    whole_and_home(lab)
    quiet(lab)
    ssh(lab, "haproxy2", f"{RESOURCE_MANAGER} takegroup {GROUP_KEY}")
    assert holders(FLOATING_IP, NODES) == NODES
    repaired(lab, "group haproxy1 was held by haproxy1, haproxy2: ResourceManager givegroup "
                  "on haproxy2, haproxy1 keeps it")


def test_no_change_deploy_brings_a_group_home_with_auto_failback_on(cluster: Lab) -> None:
    lab = cluster
    whole_and_home(lab)
    quiet(lab)
    ssh(lab, "haproxy1", "/usr/share/heartbeat/hb_standby")  # sticky: heartbeat keeps it away
    poll(lambda: holders(FLOATING_IP, NODES) == ["haproxy2"], 30)
    repaired(lab, "group haproxy1 stayed on haproxy2 with auto_failback on: hb_takeover "
                  "local on haproxy1")


def test_no_change_deploy_starts_heartbeat_where_it_was_stopped(cluster: Lab) -> None:
    lab = cluster
    whole_and_home(lab)
    ssh(lab, "haproxy2", "systemctl stop heartbeat")
    status = cli(lab, "status", "--cluster", "examples/lab.yml", hosts=None)
    assert status.returncode == 1, status.stdout
    assert "haproxy2: heartbeat is not running; fix: `systemctl start heartbeat`" \
        in status.stdout
    assert "no spare left" in status.stdout
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[haproxy2] starting heartbeat" in result.stdout
    assert heartbeat_whole(lab, NODES) and holders(FLOATING_IP, NODES) == ["haproxy1"]
