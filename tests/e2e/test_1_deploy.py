"""deploy end to end: bare lab nodes to a heartbeat cluster, idempotence, --check, pre-flight,
firewall under INPUT DROP, failover."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.demo import http_name
from hbdeploy.lab.network import HOST_LINK, node_mac
from hbdeploy.lab.outage import HolderWatch, wait_for

from .conftest import (
    FAILING_RESOURCE,
    FLOATING_IP,
    LAB_CLUSTER,
    LOCKDOWN,
    ROOT,
    UNLOCK,
    cli,
    flipped,
    hb_links_up,
    host_network,
    observe,
    poll,
    ssh,
)

NODES = ("haproxy1", "haproxy2")
STATE = ("stat -c '%n %U %a %Y' /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys; "
         "systemctl show -p MainPID --value heartbeat")


# Succeeds while the node may still send a gratuitous ARP: a send_arp runs, or heartbeat
# started less than 8 s ago.
ANNOUNCING = ("pgrep -x send_arp >/dev/null || [ \"$(ps -o etimes= -p "
              "\"$(systemctl show -p MainPID --value heartbeat)\" | tr -d ' ')\" -lt 8 ]")


def back_to_lab_yml(lab: Lab, cluster: Path) -> None:
    """Where the test left the nodes on another file than examples/lab.yml: deploy it."""
    if cluster != LAB_CLUSTER:
        back = cli(lab, "deploy")
        assert back.returncode == 0, back.stdout + back.stderr


def changes(samples: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """``samples`` without consecutive repeats: who held the IP, in the order seen."""
    return [s for i, s in enumerate(samples) if i == 0 or s != samples[i - 1]]


def state(lab: Lab, node: str) -> str:
    """Files (owner, mode, mtime) and heartbeat's PID: changes when anything is touched."""
    return ssh(lab, node, STATE).stdout


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = LAB_CLUSTER.read_text()
    assert old in text
    path = tmp_path / "cluster.yml"
    path.write_text(text.replace(old, new))
    return path


def test_a_first_deploy_that_does_not_come_up_leaves_no_configuration(
        lab: Lab, tmp_path: Path) -> None:
    """Bare nodes, a resource that never starts: nothing to restore, so the new files go
    and heartbeat is stopped (it cannot run without them). Runs first: the nodes are bare."""
    for node in NODES:
        assert ssh(lab, node, "dpkg -s heartbeat", check=False).returncode != 0
        ssh(lab, node, FAILING_RESOURCE)
    broken = variant(tmp_path, "haproxy1: IPaddr::10.213.0.100/24/eth0",
                     "haproxy1: [IPaddr::10.213.0.100/24/eth0, hbdeploy-failing]")
    result = cli(lab, "deploy", cluster=broken)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    # heartbeat's own acquisition logs the script as /etc/ha.d//resource.d/..., a repair's
    # ResourceManager as /etc/ha.d/resource.d/...: either is the journal blaming it.
    assert re.search(r"journal: ERROR: Return code 1 from /etc/ha\.d//?resource\.d/"
                     r"hbdeploy-failing", result.stdout), result.stdout
    for node in NODES:
        assert f"[{node}] removed the new ha.cf, haresources, authkeys (there was none " \
               "before); stopping heartbeat" in result.stdout
        assert ssh(lab, node, "ls /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys",
                   check=False).returncode != 0
        assert ssh(lab, node, "systemctl is-active heartbeat",
                   check=False).stdout.strip() != "active"
        assert ssh(lab, node, "command -v ifconfig", check=False).returncode == 0
        ssh(lab, node, "rm -f /etc/ha.d/resource.d/hbdeploy-failing")


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Lab:
    """haproxy1 and haproxy2 deployed with examples/lab.yml (heartbeat installed, not
    configured: see the test above)."""
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lab-only-not-a-secret" not in result.stdout + result.stderr
    for node in NODES:  # a new cluster starts on every node at once
        assert f"[{node}] starting heartbeat (with every node: none was running)" in result.stdout
    return lab


def test_fresh_deploy_serves_the_floating_ip(deployed: Lab) -> None:
    lab = deployed
    assert http_name(FLOATING_IP) == "haproxy1"
    assert ssh(lab, "haproxy2", f"ping -c1 -W2 {FLOATING_IP}", check=False).returncode == 0
    for node in NODES:
        modes = ssh(lab, node, "stat -c '%n %U %G %a' /etc/ha.d/ha.cf /etc/ha.d/haresources "
                               "/etc/ha.d/authkeys").stdout.split("\n")
        assert modes[:3] == ["/etc/ha.d/ha.cf root root 644",
                             "/etc/ha.d/haresources root root 644",
                             "/etc/ha.d/authkeys root root 600"]
        assert ssh(lab, node, "systemctl is-enabled heartbeat").stdout.strip() == "enabled"
        rules = ssh(lab, node, "iptables -S HBDEPLOY").stdout
        peer = "10.213.0.12" if node == "haproxy1" else "10.213.0.11"
        assert f"-A HBDEPLOY -s {peer}/32 -p udp -m udp --dport 694 -j ACCEPT" in rules
        assert f"-A HBDEPLOY -d {FLOATING_IP}/32 -j ACCEPT" in rules
        assert "-A INPUT -j HBDEPLOY" in ssh(lab, node, "iptables -S INPUT").stdout
        assert "ucast eth0" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout


def test_redeploy_changes_nothing(deployed: Lab) -> None:
    lab = deployed
    before = {n: state(lab, n) for n in NODES}
    result = cli(lab, "deploy", tool="fab")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unchanged: nothing to do on 2 host(s)" in result.stdout
    assert "changed" not in result.stdout.replace("unchanged", "")
    assert {n: state(lab, n) for n in NODES} == before
    # One remote command per host (the facts probe, which also announces the holder's
    # floating IP and has the spare ping it): counted, so no change can add round trips.
    assert "remote commands: haproxy1 1, haproxy2 1" in result.stdout, result.stdout
    assert "[haproxy1] announced 10.213.0.100 (gratuitous ARP)" in result.stdout


def test_a_hand_edit_of_comments_and_spacing_is_rewritten_without_a_reload(
        deployed: Lab) -> None:
    """The probe reads ha.cf and haresources line by line with the shell and authkeys as
    digests: comments, spacing, tabs, a last line without its newline and authkeys' lines in
    another order are told apart from a change, so the files are rewritten and heartbeat
    keeps running as it was (same process, the floating IP where it was)."""
    lab = deployed
    node = "haproxy2"
    pid = ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip()
    ssh(lab, node, r"""set -e; cd /etc/ha.d
        { echo '# tuned by hand'; sed 's/^deadtime /deadtime  \t /' ha.cf; } > x && cat x > ha.cf
        { cat haresources; printf '   # no newline after this'; } > x && cat x > haresources
        { echo '  # keys'; grep -v '^#' authkeys | sort -r; } > x && cat x > authkeys
        rm x; grep -q "deadtime  	 5" ha.cf""")
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"[{node}] wrote ha.cf, haresources, authkeys (comments, spacing or mode only: "
            "heartbeat is not reloaded for that)") in result.stdout, result.stdout
    assert "[haproxy1] wrote" not in result.stdout
    assert ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip() == pid
    assert "deadtime 5\n" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
    assert http_name(FLOATING_IP) == "haproxy1"
    again = cli(lab, "deploy")
    assert "unchanged: nothing to do on 2 host(s)" in again.stdout, again.stdout


def test_installed_from_a_wheel_and_run_from_an_ops_folder(deployed: Lab, tmp_path: Path
                                                           ) -> None:
    """As a user who is not developing hbdeploy: the wheel built from this checkout, pip
    installed into a new virtualenv; in an ops folder elsewhere, `hbdeploy init` writes the
    fabfile, and check, render, `fab --list` and a deploy through `fab` work from there."""
    lab = deployed
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "bench"))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("hbdeploy-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(host_network([str(venv / "bin" / "pip"), "install", "-q",
                                             "--disable-pip-version-check", str(wheel)]),
                               capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr
    ops = tmp_path / "ops"
    ops.mkdir()

    def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDEPLOY_")}
        return subprocess.run([str(venv / "bin" / tool), *args], cwd=ops, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    where = run("python", "-c", "import hbdeploy; print(hbdeploy.__file__)").stdout
    assert where.startswith(str(venv)), where  # not this checkout
    init = run("hbdeploy", "init", "--node", "haproxy1=10.213.0.11", "--node",
               "haproxy2=10.213.0.12", "--floating-ip", "10.213.0.100/24")
    assert init.returncode == 0, init.stderr
    (ops / "config" / "heartbeat.yml").write_text(LAB_CLUSTER.read_text())  # the user's own
    assert run("hbdeploy", "check").returncode == 0
    rendered = run("hbdeploy", "render", "--node", "haproxy1")
    assert rendered.returncode == 0 and "ucast eth0 10.213.0.12" in rendered.stdout
    listed = run("fab", "--list")
    assert listed.returncode == 0 and "deploy" in listed.stdout, listed.stderr
    before = {n: state(lab, n) for n in NODES}
    result = run("fab", "-S", str(lab.ssh_config_path), "-H", "haproxy1,haproxy2", "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unchanged: nothing to do on 2 host(s)" in result.stdout, result.stdout
    assert "remote commands: haproxy1 1, haproxy2 1" in result.stdout, result.stdout
    assert {n: state(lab, n) for n in NODES} == before
    changed = run("fab", "-S", str(lab.ssh_config_path), "-H", "haproxy1,haproxy2", "deploy",
                  "--check", "--cluster", str(variant(tmp_path, "warntime: 3", "warntime: 4")))
    assert changed.returncode == 0 and "+warntime 4" in changed.stdout, changed.stdout


def test_check_shows_the_diff_and_changes_nothing_then_deploy_applies(
        deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    faster = variant(tmp_path, "keepalive: 1", "keepalive: 500ms")
    if flipped(lab, tmp_path, "keepalive", "1", "500ms")[0] == LAB_CLUSTER:  # on 500ms
        assert cli(lab, "deploy").returncode == 0
    before = {n: state(lab, n) for n in NODES}
    result = cli(lab, "deploy", "--check", cluster=faster)
    assert result.returncode == 0, result.stderr
    assert "[haproxy1]   -keepalive 1" in result.stdout
    assert "[haproxy2]   +keepalive 500ms" in result.stdout
    assert "would reload heartbeat (resources kept)" in result.stdout
    assert {n: state(lab, n) for n in NODES} == before
    result = cli(lab, "deploy", cluster=faster)
    assert result.returncode == 0, result.stdout + result.stderr
    for node in NODES:
        assert "keepalive 500ms" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
    assert http_name(FLOATING_IP) == "haproxy1"
    # left on keepalive 500ms: the next test's change takes it back to examples/lab.yml


def test_a_reexec_stuck_on_a_core_process_is_freed(deployed: Lab, tmp_path: Path) -> None:
    """heartbeat applies a new ha.cf by re-executing itself once every core process has
    exited; one that never exited wedged it for good (CI). A frozen core process (SIGSTOP:
    the master's SIGTERM stays pending) stands in for it: deploy frees it and says so,
    heartbeat re-executes with the new file and the floating IP stays where it was."""
    lab = deployed
    changed, keepalive = flipped(lab, tmp_path, "keepalive", "1", "500ms")
    frozen = ssh(lab, "haproxy2", "pid=$(pgrep -f '^heartbeat: read:' | head -1); "
                                  "kill -STOP $pid && echo $pid").stdout.strip()
    assert frozen.isdigit()
    result = cli(lab, "deploy", cluster=changed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stuck on core process(es) {frozen}" in result.stdout, result.stdout
    assert f"keepalive {keepalive}\n" in ssh(lab, "haproxy2", "cat /etc/ha.d/ha.cf").stdout
    assert ssh(lab, "haproxy2", f"kill -0 {frozen}", check=False).returncode != 0
    assert http_name(FLOATING_IP) == "haproxy1"
    back_to_lab_yml(lab, changed)


def test_hostname_mismatch_stops_before_any_change(deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    changed = variant(tmp_path, "warntime: 3", "warntime: 4")
    before = {n: state(lab, n) for n in NODES}
    ssh(lab, "haproxy2", "hostname lb-renamed")
    try:
        result = cli(lab, "deploy", cluster=changed)
    finally:
        ssh(lab, "haproxy2", "hostname haproxy2")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "`uname -n` prints 'lb-renamed'" in result.stderr
    assert "hostnamectl set-hostname haproxy2" in result.stderr
    assert "no host was changed" in result.stderr
    assert {n: state(lab, n) for n in NODES} == before


def test_unreachable_host_stops_before_any_change(deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    changed = variant(tmp_path, "warntime: 3", "warntime: 4")
    before = state(lab, "haproxy1")
    lab.cut("haproxy2")
    try:
        result = cli(lab, "deploy", cluster=changed, timeout=120)
    finally:
        lab.heal("haproxy2")
    assert result.returncode != 0
    assert "haproxy2" in result.stderr and "no host was changed" in result.stderr
    assert state(lab, "haproxy1") == before
    # The cut outlasted deadtime: a deploy with nothing to change waits until heartbeat has
    # settled the partition (and adopts a group it left orphaned).
    settled = cli(lab, "deploy")
    assert settled.returncode == 0, settled.stdout + settled.stderr


def test_unknown_host_key_is_refused(deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    config = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text(lab.ssh_config_path.read_text().replace(str(lab.known_hosts_path),
                                                              str(empty)))
    before = state(lab, "haproxy1")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(config), "-H",
         "haproxy1,haproxy2", "deploy", "--cluster", str(variant(tmp_path, "warntime: 3",
                                                                     "warntime: 4"))],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "unknown host key" in result.stderr
    assert state(lab, "haproxy1") == before


# Why a node refused a non-root login (PAM's account stage: nologin files, the account).
LOGIN_STATE = ("ls -l /run/nologin /etc/nologin 2>&1; systemctl is-active systemd-user-sessions; "
               "grep '^ops:' /etc/passwd; grep '^ops:' /etc/shadow | cut -d: -f1,3-; "
               "journalctl -q --no-pager -n 8 -o short-precise -t sshd -t systemd")


def login_state(lab: Lab) -> str:
    return "".join(f"\n[{n}] " + ssh(lab, n, LOGIN_STATE, check=False).stdout for n in NODES)


SUDO_USER = (
    "id ops >/dev/null 2>&1 || useradd -m -s /bin/sh ops; "
    "install -d -m 700 -o ops -g ops /home/ops/.ssh; "
    "install -m 600 -o ops -g ops /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys; "
    "echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops")


def test_deploy_as_a_user_with_sudo(deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    for node in NODES:
        ssh(lab, node, SUDO_USER)
    config = tmp_path / "ssh_config"
    config.write_text(lab.ssh_config_path.read_text().replace("User root", "User ops"))
    changed, warntime = flipped(lab, tmp_path, "warntime", "3", "4")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(config), "-H",
         "haproxy1,haproxy2", "deploy", "--cluster", str(changed)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + login_state(lab)
    for node in NODES:
        assert f"warntime {warntime}\n" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
        modes = ssh(lab, node, "stat -c '%U %a' /etc/ha.d/ha.cf /etc/ha.d/authkeys").stdout
        assert modes.split("\n")[:2] == ["root 644", "root 600"]
        assert not ssh(lab, node, "ls /home/ops/.hbdeploy-* 2>/dev/null", check=False).stdout
    # left as it is: the next test's change takes it back to examples/lab.yml


def test_deploy_with_fabrics_key_flag_and_a_sudo_password(deployed: Lab, tmp_path: Path) -> None:
    """`-i` gives the key (the ssh_config names none) and `--prompt-for-sudo-password` answers
    a sudo that asks for one; the password shows nowhere."""
    lab = deployed
    password = "sudo-pw-of-the-lab"
    for node in NODES:
        ssh(lab, node, f"{SUDO_USER}; echo 'ops:{password}' | chpasswd; "
                       "echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops")
        assert "password is required" in ssh(lab, node, "su ops -c 'sudo -n true'",
                                             check=False).stderr
    text = lab.ssh_config_path.read_text().replace("User root", "User ops")
    config = tmp_path / "ssh_config"
    config.write_text("".join(line for line in text.splitlines(keepends=True)
                              if "IdentityFile" not in line))
    changed, warntime = flipped(lab, tmp_path, "warntime", "3", "4")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(config), "-i",
         str(lab.key_file), "--prompt-for-sudo-password", "-H", "haproxy1,haproxy2", "deploy",
         "--cluster", str(changed)],
        input=f"{password}\n", capture_output=True, text=True, timeout=300, check=False,
        start_new_session=True)  # no controlling terminal: getpass reads stdin
    assert result.returncode == 0, result.stdout + result.stderr + login_state(lab)
    assert password not in result.stdout + result.stderr
    for node in NODES:
        assert f"warntime {warntime}\n" in ssh(lab, node, "cat /etc/ha.d/ha.cf").stdout
    back_to_lab_yml(lab, changed)


def test_firewall_under_input_drop(deployed: Lab) -> None:
    lab = deployed
    for node in NODES:
        ssh(lab, node, LOCKDOWN)
    try:
        # Without hbdeploy's rules the heartbeat links die under INPUT DROP ...
        removed = cli(lab, "firewall.remove")
        assert removed.returncode == 0, removed.stderr
        assert "firewall rules removed" in removed.stdout
        for node in NODES:
            assert ssh(lab, node, "iptables -S HBDEPLOY", check=False).returncode != 0
        poll(lambda: not hb_links_up(lab, "haproxy2", "haproxy1"), 30)
        # ... and come back only with them.
        result = cli(lab, "deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        poll(lambda: hb_links_up(lab, "haproxy2", "haproxy1")
             and hb_links_up(lab, "haproxy1", "haproxy2"), 30)
        rules = {n: ssh(lab, n, "iptables -S").stdout for n in NODES}
        again = cli(lab, "deploy")
        assert again.returncode == 0, again.stderr
        assert {n: ssh(lab, n, "iptables -S").stdout for n in NODES} == rules
        assert rules["haproxy1"].count("-A INPUT -j HBDEPLOY") == 1
        # The rules survive a reboot through hbdeploy-firewall.service.
        assert ssh(lab, "haproxy1", "systemctl is-enabled hbdeploy-firewall").stdout.strip() \
            == "enabled"
    finally:
        for node in NODES:
            ssh(lab, node, UNLOCK, check=False)
    assert cli(lab, "deploy").returncode == 0


def test_deploy_reannounces_the_floating_ip_past_a_stale_arp_entry(deployed: Lab) -> None:
    """After a healed partition the network may still send the floating IP to the spare (the
    node that kept it never announces it again); a deploy's verify has the holder announce."""
    lab = deployed
    poll(lambda: http_name(FLOATING_IP) == "haproxy1", 60)
    # No announcement still on its way: the last test's deploy announced in the background,
    # and hbdeploy-guard announces 2, 4 and 6 s after a heartbeat start.
    poll(lambda: all(ssh(lab, n, ANNOUNCING, check=False).returncode != 0 for n in NODES), 30,
         interval=0.5)
    subprocess.run(["ip", "neigh", "replace", FLOATING_IP, "lladdr", node_mac(2), "dev",
                    HOST_LINK, "nud", "reachable"], check=True)
    assert http_name(FLOATING_IP, timeout=1) is None  # sent to haproxy2, which drops it
    result = cli(lab, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert http_name(FLOATING_IP, timeout=1) == "haproxy1"


def test_failover_stays_on_spare_with_auto_failback_off(deployed: Lab, tmp_path: Path) -> None:
    lab = deployed
    off = variant(tmp_path, "auto_failback: on", "auto_failback: off")
    result = cli(lab, "deploy", cluster=off)
    assert result.returncode == 0, result.stdout + result.stderr
    poll(lambda: http_name(FLOATING_IP) in NODES, 60)
    holder = http_name(FLOATING_IP)
    spare = next(n for n in NODES if n != holder)
    with HolderWatch(lab, FLOATING_IP) as watch:
        cut_at = time.monotonic()
        lab.cut(holder)
        try:
            if wait_for(lambda: http_name(FLOATING_IP, timeout=0.3) == spare, 30,
                        interval=0.05) is None:
                neigh = subprocess.run(["ip", "neigh", "show", FLOATING_IP], text=True,
                                       capture_output=True, check=False).stdout.strip()
                raise AssertionError(
                    f"{spare} did not answer within 30 s of the cut of {holder}; holders "
                    f"seen (every 0.1 s): {changes(watch.samples)}; this host's ARP entry: "
                    f"{neigh!r}; spare's MAC {node_mac(NODES.index(spare) + 1)}; the deploy "
                    f"said:\n{result.stdout}")
            # Past the guard's reaction (docs/operations.md, "Partitions"): a heal in the
            # second after both sides declared each other dead is heartbeat's own split brain.
            time.sleep(max(0.0, cut_at + 5 + 3 - time.monotonic()))
        finally:
            lab.heal(holder)
    # The healed node sees its peer again and never takes the group back (for 3 deadtimes).
    poll(lambda: hb_links_up(lab, holder, spare), 60)
    observe(lambda: http_name(FLOATING_IP, timeout=0.5) != holder, 15)
    # Home by hand, as an operator would with auto_failback off; then back to examples/lab.yml
    # (a reload: converge's failback repair is test_1b's subject, not this one's).
    back = cli(lab, "takeover", holder, "--cluster", str(off), hosts=None)
    assert back.returncode == 0, back.stdout + back.stderr
    assert cli(lab, "deploy").returncode == 0
