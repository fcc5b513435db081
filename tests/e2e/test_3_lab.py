"""The lab itself: real Debian nodes, checked host keys, offline apt, fault switches."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hbdeploy.lab import Lab, LabError, rootfs
from hbdeploy.lab.machine import mount_points, nspawn_pids

from .conftest import LAB_NODES, poll, ssh


@pytest.fixture(scope="module", autouse=True)
def fresh_lab(lab: Lab) -> None:
    """The lab tests start from bare nodes, whatever earlier modules deployed."""
    lab.down()
    lab.up(nodes=LAB_NODES)


def http_name(ip: str, timeout: float = 2) -> str:
    with urllib.request.urlopen(f"http://{ip}/", timeout=timeout) as response:
        return response.read().decode().strip()


def reachable(ip: str, port: int = 22, timeout: float = 1) -> bool:
    try:
        socket.create_connection((ip, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def test_nodes_boot_and_answer_ssh_with_checked_host_keys(lab: Lab) -> None:
    machines = lab.machines()
    assert [m.name for m in machines] == [f"haproxy{i}" for i in range(1, LAB_NODES + 1)]
    for m in machines:
        assert ssh(lab, m.name, "uname -n").stdout.strip() == m.name
        assert ssh(lab, m.ip, "uname -n").stdout.strip() == m.name  # matched by address too
        assert http_name(m.ip) == m.name
        state = ssh(lab, m.name, "systemctl is-system-running --wait", check=False)
        assert state.stdout.strip() in ("running", "degraded"), state.stdout
    keys = {m.host_public_key() for m in machines}
    assert len(keys) == len(machines), "every node has host keys of its own"
    # their disks are in RAM (docs/lab.md, "Disks"), each node's overlay on the lab's tmpfs
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    assert [m[2] for m in mounts if m[1] == str(lab.disks)] == ["tmpfs"]
    for m in machines:
        assert f"upperdir={lab.disks}/{m.name}/upper" in next(
            f[3] for f in mounts if f[1] == str(m.root))


def test_a_unit_on_one_node_does_not_hold_up_the_same_unit_on_another(lab: Lab) -> None:
    """Each node has its own cgroup tree (hbdeploy/lab/cgroups.py). In a shared one, the
    second run below failed: "Unit ... was already loaded" (its first run's unit stayed
    deactivating while haproxy1's process of the same name held the cgroup)."""
    unit = "hbdeploy-lab-cgroup-check"
    ssh(lab, "haproxy1", f"systemd-run -q --unit={unit} sleep 120")
    try:
        for _ in range(2):
            ssh(lab, "haproxy2", f"systemd-run -q --wait --unit={unit} true")
        assert ssh(lab, "haproxy2", f"systemctl is-active {unit}", check=False
                   ).stdout.strip() == "inactive"
    finally:
        ssh(lab, "haproxy1", f"systemctl stop {unit}", check=False)


def test_a_killed_image_build_is_cleaned_up_with_its_mounts(tmp_path: Path) -> None:
    """A session that ends before test_5 kills the background trixie build; the next build
    met its /proc still mounted in the unfinished folder (rmtree: "Operation not
    permitted", with a traceback)."""
    building = tmp_path / "root-x.building"
    (building / "proc").mkdir(parents=True)
    (building / "etc").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(building / "proc")], check=True)
    try:
        rootfs._discard(building)
    finally:
        subprocess.run(["umount", "-l", str(building / "proc")], check=False,
                       capture_output=True)
    assert not building.exists()
    assert str(building / "proc") not in mount_points()


def test_a_wrong_host_key_is_refused(lab: Lab, tmp_path) -> None:
    m1, m2 = lab.machines()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{m1.name},{m1.ip} {m2.host_public_key()}\n")
    result = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config_path), "-o", f"UserKnownHostsFile={wrong}",
         "-o", "BatchMode=yes", m1.name, "true"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "host key" in result.stderr.lower()


def test_nodes_have_no_route_off_the_bridge(lab: Lab) -> None:
    for m in lab.machines():
        routes = ssh(lab, m.name, "ip -4 route show").stdout
        assert "default" not in routes
        assert routes.strip().splitlines() == [
            f"{lab.addressing.subnet} dev eth0 proto kernel scope link src {m.ip}"]


def test_heartbeat_installs_offline(lab: Lab) -> None:
    node = lab.machines()[-1].name
    assert ssh(lab, node, "dpkg -s heartbeat", check=False).returncode != 0, "not preinstalled"
    result = ssh(lab, node, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                 "--no-install-recommends heartbeat",
                 check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
    version = ssh(lab, node, "dpkg-query -W -f '${Version}' heartbeat").stdout
    assert version.startswith("1:3.0.6")


def test_cut_and_heal(lab: Lab) -> None:
    m1, m2 = lab.machines()[:2]
    lab.cut(m2.name)
    try:
        assert not reachable(m2.ip)
        assert ssh(lab, m1.name, f"ping -c1 -W1 {m2.ip}", check=False).returncode != 0
        assert not next(s for s in lab.status() if s.name == m2.name).link_up
    finally:
        lab.heal(m2.name)
    poll(lambda: ssh(lab, m1.name, f"ping -c1 -W1 {m2.ip}", check=False).returncode == 0, 15)
    assert ssh(lab, m2.name, "uname -n").stdout.strip() == m2.name


def test_kill_then_start_keeps_the_disk(lab: Lab) -> None:
    m2 = lab.machines()[1]
    ssh(lab, m2.name, "echo before-kill > /root/marker && sync")
    lab.kill(m2.name)
    assert not m2.running()
    assert not reachable(m2.ip)
    assert not next(s for s in lab.status() if s.name == m2.name).running
    lab.start(m2.name)
    assert ssh(lab, m2.name, "cat /root/marker").stdout.strip() == "before-kill"


def test_unknown_node_is_a_clear_error(lab: Lab) -> None:
    with pytest.raises(LabError, match="not a lab node"):
        lab.cut("nosuch")


def test_demo_runs_the_main_job(lab: Lab, tmp_path) -> None:
    """The README's first command: lab up, deploy examples/lab.yml, status, timed drill."""
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "hbdeploy")
    result = subprocess.run([exe, "demo"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    for step in ("== 1/4 lab up", "== 2/4 deploy", "== 3/4 status", "== 4/4 failover drill"):
        assert step in out
    assert "10.213.0.100 answered from haproxy2" in out
    assert "answered from haproxy1 again" in out
    assert "lab-only-not-a-secret" not in out + result.stderr


def test_killed_run_then_down_leaves_nothing(lab: Lab) -> None:
    # A controller that died mid-run: its record is lost, its nodes run on.
    lab.state_file.unlink()
    orphans = {pid for pids in nspawn_pids().values() for pid in pids}
    assert len(orphans) == LAB_NODES
    lab.up(nodes=LAB_NODES)  # finds the strays, stops them, boots the lab again
    assert not orphans & {pid for pids in nspawn_pids().values() for pid in pids}
    assert ssh(lab, "haproxy1", "uname -n").stdout.strip() == "haproxy1"
    lab.down()
    assert lab.leftovers() == []
    # Booted and taken down by the CLI, as a script would (`lab.up`, then `lab.down`): down
    # returns once every nspawn is gone, not even a zombie waiting for init to reap it.
    hbdeploy = str(Path(sys.executable).parent / "hbdeploy")
    subprocess.run([hbdeploy, "lab.up", "--nodes", str(LAB_NODES)], check=True,
                   capture_output=True, timeout=300)
    booted = [pid for pids in nspawn_pids().values() for pid in pids]  # this lab's only
    assert len(booted) == LAB_NODES
    subprocess.run([hbdeploy, "lab.down"], check=True, capture_output=True, timeout=120)
    left = [pid for pid in booted if Path(f"/proc/{pid}").exists()]  # zombies count
    assert not left, f"systemd-nspawn processes left after lab.down: {left}"
    lab.up(nodes=LAB_NODES)  # later tests get a fresh lab
    assert len(lab.status()) == LAB_NODES
