"""Faults mid-run and concurrent operators: the run lock, interrupts in every phase, apt
failing, a full /etc; and the password kept out of every process's arguments."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hbdeploy import apply
from hbdeploy.config import load_cluster
from hbdeploy.lab import Lab, network
from hbdeploy.lab.demo import http_name
from hbdeploy.lab.outage import HolderWatch, HttpProbe
from hbdeploy.layout import BACKUP_DIR, UNAPPLIED
from hbdeploy.lock import OWNER
from hbdeploy.remote import Remote, RemoteError, connections, verify_host_keys
from hbdeploy.render import render_node

from .conftest import (
    FAILING_RESOURCE,
    FLOATING_IP,
    LAB_CLUSTER,
    ROOT,
    cli,
    flipped,
    poll,
    ssh,
    variant,
)

NODES = ("haproxy1", "haproxy2")
FILES = "sha256sum /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys"
LEFTOVERS = "ls -A /etc/ha.d | grep -e hbdeploy-new -e '[.]part$' || true"
SECOND_IP = "10.213.0.101"
UNUSED_IP = "10.213.0.99"  # in the lab's subnet, on no node


def files(lab: Lab) -> dict[str, str]:
    return {n: ssh(lab, n, FILES).stdout for n in NODES}


def lock_lines(lab: Lab) -> dict[str, str]:
    return {n: ssh(lab, n, f"cat {OWNER} 2>/dev/null || true").stdout.strip() for n in NODES}


def healthy(lab: Lab) -> None:
    """Back to examples/lab.yml, the group on haproxy1, every node healthy."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: cli(lab, "status", "--cluster", str(LAB_CLUSTER), hosts=None).returncode == 0,
         60)
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Lab:
    healthy(lab)
    return lab


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Running:
    """hbdeploy running in the background, its output read line by line as it comes."""

    def __init__(self, lab: Lab, *args: str, cluster: Path = LAB_CLUSTER,
                 ssh_config: Path | None = None) -> None:
        argv = [str(Path(sys.executable).parent / "hbdeploy"), "-S",
                str(ssh_config or lab.ssh_config_path),
                "-H", ",".join(NODES), *args]
        if args[0] == "deploy":
            argv += ["--cluster", str(cluster)]
        # As from an operator's terminal: SIGINT is Ctrl-C's, whatever this suite inherited
        # (a shell's background job, nohup, some CI runners start with SIGINT ignored, which
        # Python then keeps ignoring: the interrupt tests would see no Ctrl-C at all).
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     preexec_fn=_default_sigint)
        self.lines: list[str] = []
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, count: int = 1, deadline: float = 120) -> None:
        poll(lambda: sum(text in line for line in self.lines) >= count or
             self.proc.poll() is not None, deadline, 0.02)
        assert sum(text in line for line in self.lines) >= count, "".join(self.lines)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()
        return code

    @property
    def out(self) -> str:
        return "".join(self.lines)


# -- the run lock ----------------------------------------------------------------------------

def fake_lock(lab: Lab, node: str, expires_in: int) -> None:
    """The lock of another operator's run (alice on laptop2, PID 4242)."""
    ssh(lab, node, f"now=$(date +%s); printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "
                   f"{'f' * 32} alice laptop2 4242 deploy \"$now\" \"$((now + {expires_in}))\" "
                   f"> {OWNER}")


def test_a_live_lock_refuses_every_command_an_expired_one_is_taken_over(
        cluster: Lab, tmp_path: Path) -> None:
    lab = cluster
    try:
        warmer = variant(tmp_path, "w.yml", ("warntime: 3", "warntime: 4"))
        three = variant(tmp_path, "three.yml",
                        ("  haproxy2: 10.213.0.12\n",
                         "  haproxy2: 10.213.0.12\n  haproxy3: 10.213.0.13\n"))
        fake_lock(lab, "haproxy2", 300)
        before = files(lab)
        pair = ",".join(NODES)
        for args, hosts, host in (
                (["deploy"], pair, "haproxy2"),
                (["standby", "haproxy1", "--cluster", str(LAB_CLUSTER)], pair, "haproxy2"),
                (["drill", "--yes", "--cluster", str(LAB_CLUSTER)], pair, "haproxy2"),
                # it reloads the running nodes, reached at the cluster file's addresses
                (["bootstrap", "--cluster", str(three)], "haproxy3", "10.213.0.12")):
            result = cli(lab, *args, hosts=hosts)
            assert result.returncode == 1, result.stdout + result.stderr
            assert (f"{host}: locked by another hbdeploy run: alice@laptop2 (PID 4242, hbdeploy "
                    "deploy) since") in result.stderr, result.stderr
            assert "--break-lock" in result.stderr and "Traceback" not in result.stderr
        assert files(lab) == before and http_name(FLOATING_IP) == "haproxy1"
        # the spare that bootstrap would have joined got nothing either
        assert ssh(lab, "haproxy3", "dpkg -s heartbeat", check=False).returncode != 0
        check = cli(lab, "deploy", "--check", cluster=warmer)  # read-only: not refused
        assert check.returncode == 0, check.stdout + check.stderr
        assert "[haproxy2] note: another hbdeploy run holds the lock: alice@laptop2" in check.stdout
        result = cli(lab, "deploy", cluster=warmer)  # a change: the lock is needed, and live
        assert result.returncode == 1 and "alice@laptop2" in result.stderr
        assert files(lab) == before

        fake_lock(lab, "haproxy2", -1)  # its holder died long ago
        result = cli(lab, "deploy", cluster=warmer)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[haproxy2] took over the expired lock of alice@laptop2 (PID 4242" in result.stdout
        assert lock_lines(lab) == {"haproxy1": "", "haproxy2": ""}  # released

        fake_lock(lab, "haproxy1", 300)
        result = cli(lab, "deploy", "--break-lock")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[haproxy1] broke the lock of alice@laptop2 (PID 4242" in result.stdout
        assert lock_lines(lab) == {"haproxy1": "", "haproxy2": ""}
    finally:  # a failure above must not leave the fake lock to the tests after it
        for node in NODES:
            ssh(lab, node, f"rm -f {OWNER}", check=False)


def test_two_operators_at_once_the_second_is_refused(cluster: Lab, tmp_path: Path) -> None:
    lab = cluster
    warmer = flipped(lab, tmp_path)[0]
    want = "warntime 3" if warmer == LAB_CLUSTER else "warntime 4"
    first = Running(lab, "deploy", cluster=warmer)  # a rolling reload: a few seconds
    first.wait_for("wrote ha.cf")  # it holds the lock from before its first change
    second = cli(lab, "deploy")
    assert first.finish() == 0, first.out + first.err
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"(PID {first.proc.pid}, hbdeploy deploy) since" in second.stderr, second.stderr
    assert lock_lines(lab) == {"haproxy1": "", "haproxy2": ""}
    assert want in ssh(lab, "haproxy2", "cat /etc/ha.d/ha.cf").stdout  # whole


# -- interrupts ----------------------------------------------------------------------------

PHASES = [
    # (phase, signal(s), what to wait for in the output before sending, and how many times)
    ("pre-flight", signal.SIGINT, None, 0),
    ("install", signal.SIGINT, "installing", 1),
    ("push", signal.SIGTERM, "wrote ha.cf", 1),
    ("firewall", signal.SIGTERM, "firewall rules in place", 1),
    ("rolling update", signal.SIGINT, "reloading heartbeat", 1),  # one host of two done
    # An operator's escalation once both hosts are done: Ctrl-C, SIGTERM, SIGKILL, 0.3 s apart.
    ("verify", (signal.SIGINT, signal.SIGTERM, signal.SIGKILL), "heartbeat up, sees", 2),
]


@pytest.mark.parametrize(("phase", "sig", "marker", "count"), PHASES,
                         ids=[p[0] for p in PHASES])
def test_an_interrupt_leaves_nothing_half_done_and_a_rerun_converges(
        cluster: Lab, tmp_path: Path, phase: str,
        sig: signal.Signals | tuple[signal.Signals, ...], marker: str | None,
        count: int) -> None:
    lab = cluster
    signals = sig if isinstance(sig, tuple) else (sig,)
    changed = flipped(lab, tmp_path)[0]
    if phase == "install":
        ssh(lab, "haproxy2", "dpkg -r net-tools >/dev/null")  # the deploy installs it back
    if phase == "firewall":
        assert cli(lab, "firewall.remove").returncode == 0
    old = files(lab)
    ssh_config = None
    if phase == "pre-flight":  # haproxy2 at an address nobody has: pre-flight waits on it
        ssh_config = tmp_path / "ssh_config"
        ssh_config.write_text(lab.ssh_config_path.read_text().replace(
            "HostName 10.213.0.12", f"HostName {UNUSED_IP}"))
    with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic, \
            HolderWatch(lab, FLOATING_IP) as watch:
        run = Running(lab, "deploy", cluster=changed, ssh_config=ssh_config)
        if marker is None:
            time.sleep(1.5)  # connecting to haproxy2 (ConnectTimeout 5 s)
        else:
            run.wait_for(marker, count=count)
        for number, each in enumerate(signals):
            if number:
                time.sleep(0.3)
            if run.proc.poll() is not None:
                break  # it ended before the next signal
            run.proc.send_signal(each)
        code = run.finish()
    killed = code == -signal.SIGKILL
    assert code == 130 or (killed and signal.SIGKILL in signals), run.out + run.err
    assert "Traceback" not in run.err
    if not killed:
        assert "interrupted" in run.err
    after = files(lab)
    if phase == "pre-flight":
        assert after == old  # nothing was changed
    # Nothing half-done: each file whole (old or new), no staged copy, dpkg sound.
    for node in NODES:
        if not killed:  # (a SIGKILL between staging and renaming may leave a staged copy)
            assert ssh(lab, node, LEFTOVERS).stdout == ""
        assert ssh(lab, node, "dpkg --audit").stdout == ""
    # The floating IP stayed served.
    assert watch.max_holders <= 1
    assert traffic.failures <= 2, traffic.failures
    locks = lock_lines(lab)
    if killed and any(locks.values()):  # it had no chance to release: the lock names it
        assert all(f"\t{run.proc.pid}\t" in line for line in locks.values() if line), locks
        refused = cli(lab, "deploy", cluster=changed)
        assert refused.returncode == 1 and f"PID {run.proc.pid}" in refused.stderr
        rerun = cli(lab, "deploy", "--break-lock", cluster=changed)
        assert "broke the lock" in rerun.stdout
    else:
        assert locks == {"haproxy1": "", "haproxy2": ""}, locks
        rerun = cli(lab, "deploy", cluster=changed)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    new = files(lab)
    for node in NODES:  # each file as it was, or as the rerun wants it: never a third state
        for was, then, now in zip(old[node].splitlines(), after[node].splitlines(),
                                  new[node].splitlines(), strict=True):
            assert then in (was, now), (node, then)
    changed_hosts = sum(after[node] != old[node] for node in NODES)
    print(f"{phase}: {'/'.join(x.name for x in signals)}, exit {code}: {changed_hosts} of 2 "
          f"hosts had new files, lock {'left' if killed and any(locks.values()) else 'released'}; "
          f"{traffic.failures} of {len(traffic.answers)} probes failed")


def test_a_password_rotation_interrupted_half_way_keeps_the_nodes_talking_and_a_rerun_ends_it(
        cluster: Lab, tmp_path: Path) -> None:
    """Ctrl-C once the nodes hold both keys: the run stops (exit 130), the nodes still hear
    each other with the floating IP served, and the next deploy does the passes that are
    left, not the whole rotation again."""
    lab = cluster
    healthy(lab)
    rotated = variant(tmp_path, "rotated.yml", ("lab-only-not-a-secret",
                                                "a-password-rotated-half-way-0x51"))
    with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic:
        run = Running(lab, "deploy", cluster=rotated)
        run.wait_for("password rotation 2/3", count=2)  # pass 1 done on both nodes
        run.proc.send_signal(signal.SIGINT)
        code = run.finish()
        assert code == 130, run.out + run.err
        keys = {n: ssh(lab, n, "grep -c '^[0-9]' /etc/ha.d/authkeys").stdout.strip()
                for n in NODES}
        assert keys == {"haproxy1": "2", "haproxy2": "2"}, (keys, run.out)  # old and new
        poll(lambda: cli(lab, "status", "--cluster", str(rotated), hosts=None).returncode
             == 0, 30)  # still one cluster
        rerun = cli(lab, "deploy", cluster=rotated)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "the new key added" not in rerun.stdout  # pass 1 is not done again
    assert rerun.stdout.count("password rotated") == 2, rerun.stdout
    assert traffic.failures == 0, traffic.failed_at()
    assert lock_lines(lab) == {"haproxy1": "", "haproxy2": ""}
    healthy(lab)  # and the lab's password back (a rotation too)


def test_a_dropped_ssh_session_mid_run_is_reopened(cluster: Lab, tmp_path: Path) -> None:
    """Every SSH session to haproxy2 dropped after the first host's files are in place: the
    run reconnects (Fabric reopens a closed connection) and completes."""
    lab = cluster
    changed = flipped(lab, tmp_path)[0]
    with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic:
        run = Running(lab, "deploy", cluster=changed)
        run.wait_for("wrote ha.cf")
        run.proc.send_signal(signal.SIGSTOP)  # held there while the sessions go
        try:
            before = ssh(lab, "haproxy2", "pgrep -c -f 'sshd: root@notty'", check=False).stdout
            ssh(lab, "haproxy2", "pkill -KILL -f 'sshd: root@notty'", check=False)
        finally:
            run.proc.send_signal(signal.SIGCONT)
        code = run.finish()
    assert int(before) >= 2, before  # hbdeploy's session and this command's
    assert code == 0, run.out + run.err
    assert traffic.failures == 0 and lock_lines(lab) == {"haproxy1": "", "haproxy2": ""}


@pytest.mark.parametrize("then", ["command", "file"])
def test_a_connection_that_died_unnoticed_is_reopened_for_the_next_command(cluster: Lab,
                                                                          then: str) -> None:
    """haproxy2's sshd session dies and its FIN never arrives (dropped in haproxy2's
    namespace): the client still thinks the connection is up, and its next command learns
    otherwise only when it asks for a session (a TCP reset). Nothing of the command was
    sent, so it reconnects and runs it (CI, 2026-12-05: "ssh error: " after sessions were
    killed, when the command went out before paramiko had read the FIN). A file's transfer
    (its SFTP session open on the old connection) is made again on a new one the same way:
    it only writes the staged file beside the target."""
    lab = cluster
    ns = network.node_ns("haproxy2")
    remote = Remote(verify_host_keys(connections(["haproxy2"], lab.ssh_config_path)[0]),
                    "haproxy2")

    def iptables(*args: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "iptables", *args], check=True)

    rules: list[list[str]] = []
    target = f"/run/hbdeploy-test-file-{os.getpid()}"
    try:
        assert remote.run("echo one")[1].strip() == "one"
        if then == "file":
            remote.write_file(target, "one\n", 0o600)  # its SFTP session stays open
        port = remote.connection.client.get_transport().sock.getsockname()[1]
        old = ["OUTPUT", "-p", "tcp", "--sport", "22", "--dport", str(port)]
        for flag in ("FIN", "RST"):  # the old connection's close: never sent
            rules.append([*old, "--tcp-flags", flag, flag, "-j", "DROP"])
            iptables("-I", *rules[-1])
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                              check=True).stdout.split()
        sessions = [p for p in pids if Path(f"/proc/{p}/cmdline").exists() and Path(
            f"/proc/{p}/cmdline").read_bytes().startswith((b"sshd: root@",
                                                           b"sshd-session: root@"))]
        assert sessions, "the client's sshd session"
        for pid in sessions:
            os.kill(int(pid), signal.SIGKILL)
        poll(lambda: not any(Path(f"/proc/{p}").exists() for p in sessions), 10)
        iptables("-D", *rules.pop())  # the reset answering the next packet gets through
        assert remote.connection.is_connected  # the client has not noticed
        if then == "command":
            assert remote.run("echo two")[1].strip() == "two"
            assert remote.commands == 3, "the second command was run again on a new connection"
        else:
            before = remote.commands
            remote.write_file(target, "two\n", 0o600)
            # the transfer twice (the second on a new connection), then the rename
            assert remote.commands - before == 3
            assert ssh(lab, "haproxy2", f"stat -c %a {target}; cat {target}").stdout.split() == [
                "600", "two"]
    finally:
        remote.close()
        for rule in rules:
            iptables("-D", *rule)
        ssh(lab, "haproxy2", f"rm -f {target}", check=False)


def _kill_ssh_sessions(ns: str) -> list[str]:
    """SIGKILL every root sshd session in namespace ``ns`` (their clients see the FIN)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=True).stdout.split()
    sessions = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
                    (b"sshd: root@", b"sshd-session: root@")):
                os.kill(int(pid), signal.SIGKILL)
                sessions.append(pid)
    return sessions


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "not-idempotent"])
def test_a_connection_lost_while_a_command_runs(cluster: Lab, idempotent: bool) -> None:
    """haproxy2's sshd session is killed while a command runs there (its first run sleeps,
    counted in a file): an idempotent command is run again on a new connection and
    succeeds; any other is an error saying that whether it ran is unknown, and is not run
    again (CI, 2026-12-05: "ssh error: " when a reload signal's session was killed)."""
    lab = cluster
    ns = network.node_ns("haproxy2")
    runs = f"/run/hbdeploy-test-runs-{os.getpid()}"
    command = (f"n=$(cat {runs} 2>/dev/null || echo 0); echo $((n + 1)) > {runs}; "
               '[ "$n" -ge 1 ] || exec sleep 60; echo done')
    remote = Remote(verify_host_keys(connections(["haproxy2"], lab.ssh_config_path)[0]),
                    "haproxy2")
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(remote.run(command, idempotent=idempotent, timeout=30))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        poll(lambda: ssh(lab, "haproxy2", f"cat {runs} 2>/dev/null", check=False
                         ).stdout.strip() == "1", 15, 0.05)
        assert _kill_ssh_sessions(ns), "the client's sshd session"
        thread.join(40)
        assert not thread.is_alive(), "the command never returned"
        count = ssh(lab, "haproxy2", f"cat {runs}; rm -f {runs}; pkill -x -f 'sleep 60'",
                    check=False).stdout.split()[0]
    finally:
        remote.close()
    if idempotent:
        assert outcome and outcome[0] == (0, "done\n", ""), outcome
        assert (count, remote.commands) == ("2", 2)
    else:
        assert outcome and isinstance(outcome[0], RemoteError), outcome
        message = str(outcome[0])
        assert "the connection closed while `sh -c" in message, message
        assert "whether it ran is unknown" in message, message
        assert (count, remote.commands) == ("1", 1)


def _processes(ns: str, prefix: bytes) -> list[str]:
    """Pids in namespace ``ns`` whose command line starts with ``prefix`` (NUL-separated)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=True).stdout.split()
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(prefix):
                found.append(pid)
    return found


def test_a_restart_whose_connection_is_lost_is_not_run_twice(cluster: Lab) -> None:
    """apply.restart on haproxy2 (which holds nothing): its sshd session is killed while
    `systemctl restart` runs. The restart is run again on a new connection, finds the
    restart it queued (heartbeat's InvocationID changed) and does not restart again: one
    start of heartbeat in the journal. Then both branches of a rerun by its token: the first
    attempt never reached systemd (restarted now), and it did (not restarted again)."""
    lab = cluster
    ns = network.node_ns("haproxy2")
    remote = Remote(verify_host_keys(connections(["haproxy2"], lab.ssh_config_path)[0]),
                    "haproxy2")

    def invocation() -> str:
        return ssh(lab, "haproxy2", "systemctl show -p InvocationID --value heartbeat.service"
                   ).stdout.strip()

    def starts_since(cursor: str) -> int:
        out = ssh(lab, "haproxy2", f"journalctl -u heartbeat.service --after-cursor "
                                   f"{shlex.quote(cursor)} -o cat").stdout
        return out.count("Started heartbeat.service")  # systemd's line (heartbeat logs twice)

    cursor = ssh(lab, "haproxy2", "journalctl -u heartbeat.service -n 0 --show-cursor -o cat"
                 ).stdout.strip().rsplit("cursor: ", 1)[1]
    before = invocation()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(apply.restart(remote))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        poll(lambda: _processes(ns, b"systemctl\0restart\0heartbeat.service"), 20, 0.005)
        assert _kill_ssh_sessions(ns), "the client's sshd session"
        thread.join(120)
        assert not thread.is_alive(), "the restart never returned"
        assert outcome == ["the connection was lost while heartbeat restarted: it restarted "
                           "once, not again"], outcome
        assert remote.commands == 2, "run again once, on a new connection"
        after = invocation()
        assert after and after != before
        assert starts_since(cursor) == 1, "heartbeat started once"
        poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy1", check=False
                         ).stdout.strip() == "active", 60, 0.5)

        # A rerun whose first attempt never reached systemd: the record says the token with
        # the InvocationID still running.
        ssh(lab, "haproxy2", f"echo 'never-reached {after}' > {apply.RESTARTED}")
        assert apply.restart(remote, token="never-reached") == (
            "the connection was lost before the restart reached systemd: restarted now")
        again = invocation()
        assert again not in (after, "") and starts_since(cursor) == 2
        poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy1", check=False
                         ).stdout.strip() == "active", 60, 0.5)
        # A rerun of a restart that took place: not restarted again.
        ssh(lab, "haproxy2", f"echo 'took-place {after}' > {apply.RESTARTED}")
        assert "restarted once, not again" in apply.restart(remote, token="took-place")
        assert invocation() == again and starts_since(cursor) == 2
    finally:
        remote.close()


def test_a_reload_of_a_file_heartbeat_has_read_already_is_not_awaited_in_vain(
        cluster: Lab) -> None:
    """heartbeat restarted itself (after a healed cut: "Both machines own our resources")
    between the deploy's rename of ha.cf and its reload signal, so it read the new file and
    answered the signal "Configuration unchanged.": no re-exec was coming, and the deploy
    waited 15 s for one and failed (CI, 2026-12-07, twice). Here on haproxy2: a reload of a
    touched ha.cf re-executes heartbeat; a second reload finds it on that file already and
    returns at once, without a re-exec."""
    lab = cluster
    remote = Remote(verify_host_keys(connections(["haproxy2"], lab.ssh_config_path)[0]),
                    "haproxy2")

    def journal(cursor: str) -> str:
        return ssh(lab, "haproxy2", f"journalctl -u heartbeat.service --after-cursor "
                                    f"{shlex.quote(cursor)} -o cat").stdout

    def cursor() -> str:
        return ssh(lab, "haproxy2", "journalctl -u heartbeat.service -n 0 --show-cursor -o cat"
                   ).stdout.strip().rsplit("cursor: ", 1)[1]

    try:
        first = cursor()
        ssh(lab, "haproxy2", "touch /etc/ha.d/ha.cf")
        assert apply.reload(remote, reexec=True) == ""
        assert journal(first).count(apply.REEXEC_LINE) == 1
        poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy1", check=False
                         ).stdout.strip() == "active", 60, 0.5)
        second = cursor()
        assert apply.reload(remote, reexec=True) == ""
        said = journal(second)
        assert "Configuration unchanged." in said and apply.REEXEC_LINE not in said, said
    finally:
        remote.close()


def test_files_an_interrupted_run_left_unread_are_read_by_the_next_run(cluster: Lab,
                                                                       tmp_path: Path) -> None:
    """Ctrl-C once both hosts' new ha.cf is in place, before heartbeat re-read it on both:
    the next run of the same file finds the files equal but reloads where heartbeat has
    not read them (the node's record of files not re-read, layout.UNAPPLIED), instead of
    finding nothing to do; the run after it has nothing to do."""
    lab = cluster
    changed, value = flipped(lab, tmp_path)
    def running_warntime() -> dict[str, str]:
        return {n: ssh(lab, n, "cl_status hbparameter -p warntime").stdout.strip()
                for n in NODES}

    with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic:
        run = Running(lab, "deploy", cluster=changed)
        run.wait_for("wrote ha.cf", count=2)
        run.proc.send_signal(signal.SIGINT)
        code = run.finish()
        assert code == 130, run.out + run.err
        unread = [n for n, v in running_warntime().items() if v != value]
        assert unread, "the interruption came after both reloads: the test proves nothing"
        rerun = cli(lab, "deploy", cluster=changed)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        for node in unread:
            assert f"[{node}] ha.cf in place but not re-read by heartbeat yet" in rerun.stdout, \
                rerun.stdout
        assert running_warntime() == dict.fromkeys(NODES, value), rerun.stdout
        again = cli(lab, "deploy", cluster=changed)
    assert again.returncode == 0 and "remote commands: haproxy1 1, haproxy2 1" in again.stdout, \
        again.stdout
    assert traffic.failures == 0, traffic.failed_at()


def test_a_rerun_failing_on_files_left_unread_restores_what_heartbeat_had_read(
        cluster: Lab, tmp_path: Path) -> None:
    """haproxy2 has a haresources an earlier run put in place and stopped before heartbeat
    read it (set up as apply.commit leaves it: the backup, the file, the record; the
    interruption itself is the test above). The rerun restarts haproxy2 for it, the group
    cannot start there, and the rollback puts back the haresources heartbeat had read,
    from the earlier run's backup: this run made no backup of that file."""
    lab = cluster
    for node in NODES:
        ssh(lab, node, FAILING_RESOURCE)
    broken = variant(tmp_path, "broken.yml", ("haproxy1: IPaddr::10.213.0.100/24/eth0",
                                              "haproxy1: [IPaddr::10.213.0.100/24/eth0, "
                                              "hbdeploy-failing]"),
                     ("warntime: 3", "warntime: 2"))  # ha.cf changes on haproxy1 too
    before = files(lab)
    content = render_node(load_cluster(str(broken)), "haproxy2")["haresources"].content
    earlier = "20261201T000000"
    ssh(lab, "haproxy2",
        f"cp -p /etc/ha.d/haresources {BACKUP_DIR}/haresources.{earlier} && "
        f"printf %s {shlex.quote(content)} > /etc/ha.d/haresources && "
        f'echo "$(systemctl show -p InvocationID --value heartbeat.service) {earlier} '
        f'haresources" > {UNAPPLIED}')
    try:
        result = cli(lab, "deploy", cluster=broken)
        out = result.stdout + result.stderr
        assert result.returncode != 0 and "Traceback" not in result.stderr, out
        assert "[haproxy2] haresources in place but not re-read by heartbeat yet" in out, out
        assert "the groups cannot start there: haproxy2" in out, out
        assert any(line.startswith("[haproxy2] restored the previous ") and "haresources"
                   in line for line in out.splitlines()), out
        assert files(lab) == before, out
        # haproxy1's new ha.cf, never re-read (its handover failed first), was restored:
        # nothing is left recorded as not re-read there
        assert ssh(lab, "haproxy1", f"cat {UNAPPLIED} 2>/dev/null || true").stdout == "", out
    finally:
        ssh(lab, "haproxy2", f"rm -f {BACKUP_DIR}/haresources.{earlier}")
    again = cli(lab, "deploy")  # what heartbeat runs is the lab's file again: nothing to do
    assert again.returncode == 0, again.stdout + again.stderr
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)


def test_a_node_dying_mid_run_stops_it_and_a_rerun_converges(cluster: Lab,
                                                             tmp_path: Path) -> None:
    """haproxy2 loses power after the first host's files are in place and before its
    reload: the run stops, naming it, within the dead-peer timeout; haproxy1 keeps the
    floating IP; once haproxy2 is back, a rerun converges."""
    lab = cluster
    changed = flipped(lab, tmp_path)[0]
    with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic:
        run = Running(lab, "deploy", cluster=changed)
        run.wait_for("wrote ha.cf")
        run.proc.send_signal(signal.SIGSTOP)
        try:
            lab.kill("haproxy2")
        finally:
            run.proc.send_signal(signal.SIGCONT)
        started = time.monotonic()
        code = run.finish()
        stopped_after = time.monotonic() - started
    try:
        assert code == 1, run.out + run.err
        assert "haproxy2" in run.err and "Traceback" not in run.err, run.err
        assert traffic.failures == 0 and http_name(FLOATING_IP) == "haproxy1"
        assert ssh(lab, "haproxy1", f"cat {OWNER} 2>/dev/null || true").stdout == ""
        assert ssh(lab, "haproxy1", LEFTOVERS).stdout == ""
        print(f"node death: the run stopped {stopped_after:.1f} s after it; "
              f"{run.err.strip().splitlines()[-1]}")
    finally:
        lab.start("haproxy2")
    rerun = cli(lab, "deploy", cluster=changed)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr


# -- apt failing ---------------------------------------------------------------------------

HOLD_DPKG_LOCK = (  # what another apt would do: an fcntl write lock on dpkg's frontend lock
    "setsid perl -MFcntl -e 'open(my $f, \">>\", \"/var/lib/dpkg/lock-frontend\") or die; "
    "my $l = pack(\"s s x4 q q i x4\", F_WRLCK, 0, 0, 0, 0); fcntl($f, F_SETLKW, $l) or die; "
    "sleep 120' "
    "</dev/null >/dev/null 2>&1 & echo $!")


def test_apt_failing_changes_nothing_on_any_host(cluster: Lab, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lab = cluster
    monkeypatch.setenv("HBDEPLOY_DPKG_WAIT", "3")
    changed = flipped(lab, tmp_path)[0]
    ssh(lab, "haproxy2", "dpkg -r net-tools >/dev/null")  # so that the deploy installs
    before = files(lab)

    holder = ssh(lab, "haproxy2", HOLD_DPKG_LOCK).stdout.strip()
    try:
        result = cli(lab, "deploy", cluster=changed)
    finally:
        ssh(lab, "haproxy2", f"kill {holder}", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("haproxy2: cannot install: another process held the dpkg lock for more than 3 s: "
            f"/var/lib/dpkg/lock-frontend: PID {holder} (perl") in result.stderr, result.stderr
    assert "nothing was installed or written on any host" in result.stderr
    assert files(lab) == before

    # An install cut short: ufw unpacked, never configured.
    ssh(lab, "haproxy2", "dpkg --unpack /var/cache/apt/archives/ufw_*.deb >/dev/null 2>&1")
    try:
        result = cli(lab, "deploy", cluster=changed)
    finally:
        ssh(lab, "haproxy2", "dpkg -r ufw >/dev/null")
    assert result.returncode == 1 and "dpkg's state is broken" in result.stderr, result.stderr
    assert "dpkg --configure -a" in result.stderr and "ufw" in result.stderr
    assert files(lab) == before

    ssh(lab, "haproxy2", "mkdir -p /root/held && mv /var/cache/apt/archives/net-tools_*.deb "
                         "/root/held/")
    try:
        result = cli(lab, "deploy", cluster=changed)
    finally:
        ssh(lab, "haproxy2", "mv /root/held/*.deb /var/cache/apt/archives/")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "haproxy2: cannot install: the packages could not be fetched" in result.stderr
    print("apt fetch:", result.stderr.strip().replace("\n", " | "))
    assert files(lab) == before and http_name(FLOATING_IP) == "haproxy1"

    result = cli(lab, "deploy", cluster=changed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[haproxy2] installing net-tools" in result.stdout


# -- a full /etc ------------------------------------------------------------------------------

def test_a_full_etc_fails_the_push_cleanly(cluster: Lab, tmp_path: Path) -> None:
    lab = cluster
    changed = flipped(lab, tmp_path)[0]
    # /etc/ha.d on haproxy2 becomes a small tmpfs holding its files, filled to the brim.
    ssh(lab, "haproxy2", "cp -a /etc/ha.d /root/ha.d.keep && mount -t tmpfs -o size=256k "
                         "tmpfs /etc/ha.d && cp -a /root/ha.d.keep/. /etc/ha.d/ && "
                         "dd if=/dev/zero of=/etc/ha.d/filler bs=4k >/dev/null 2>&1; "
                         "df /etc/ha.d | tail -n 1")
    try:
        before = files(lab)
        with HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic:
            result = cli(lab, "deploy", cluster=changed)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "haproxy2: writing /etc/ha.d/ha.cf failed" in result.stderr, result.stderr
        assert "no space left there" in result.stderr
        print("full /etc:", result.stderr.strip().replace("\n", " | "))
        assert "no file was written on any host" in result.stderr
        assert files(lab) == before
        for node in NODES:
            assert ssh(lab, node, LEFTOVERS).stdout == ""
        assert traffic.failures == 0
        ssh(lab, "haproxy2", "rm -f /etc/ha.d/filler")
        result = cli(lab, "deploy", cluster=changed)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:  # back on the real /etc/ha.d, with the files the node now runs with
        ssh(lab, "haproxy2", "rm -f /etc/ha.d/filler; cp -a /etc/ha.d/. /root/ha.d.keep/ && "
                             "umount /etc/ha.d && cp -a /root/ha.d.keep/. /etc/ha.d/ && "
                             "rm -rf /root/ha.d.keep", check=False)


# -- the password in process lists -------------------------------------------------------------

SAMPLE = ("nohup sh -c 'while [ ! -e /tmp/stop-sampling ]; do "
          "cat /proc/[0-9]*/cmdline 2>/dev/null | tr \"\\0\" \"\\n\"; echo ---sample---; done' "
          ">/tmp/args.log 2>/dev/null </dev/null & echo started")


def test_the_password_is_in_no_process_arguments_output_or_journal(cluster: Lab,
                                                                    tmp_path: Path) -> None:
    lab = cluster
    secret = "ps-test-secret-7b3c91e0d4"
    changed = variant(tmp_path, "c.yml", ("lab-only-not-a-secret", secret))
    for node in NODES:
        ssh(lab, node, "rm -f /tmp/stop-sampling /tmp/args.log; " + SAMPLE)
    started = ssh(lab, "haproxy1", "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    result = cli(lab, "deploy", "--verbose", cluster=changed)
    check = cli(lab, "deploy", "--check", cluster=LAB_CLUSTER)  # its diff, back
    for node in NODES:
        ssh(lab, node, "touch /tmp/stop-sampling")
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr + check.stdout + check.stderr
    for node in NODES:
        samples = int(ssh(lab, node, "grep -c -- ---sample--- /tmp/args.log").stdout)
        assert samples > 50, samples  # the sampler ran through the whole deploy
        assert ssh(lab, node, f"grep -c -- {secret} /tmp/args.log", check=False).stdout.strip() \
            == "0"
        assert ssh(lab, node, f"journalctl --since '{started}' | grep -c -- {secret}",
                   check=False).stdout.strip() == "0"
        assert secret in ssh(lab, node, "cat /etc/ha.d/authkeys").stdout  # it was deployed
    healthy(lab)  # the lab's password back for the modules after this one
