"""Debian 13 (trixie): a trixie pair, and a pair halfway through an OS upgrade (one bookworm
node, one trixie node), each deployed from bare nodes, redeployed with nothing to change, and
failed over by a cut of its holder and back, measured by an HTTP probe of its floating IP.

The trixie image is built in the background from the start of the session (conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.demo import http_name
from hbdeploy.lab.outage import HttpProbe, cut_cycle, heartbeat_whole

from .conftest import LAB_CLUSTER, ROOT, poll, ssh, wait_for_release_images

DEADTIME = 5  # examples/lab.yml's timings
RELEASES = ["trixie", "trixie", "bookworm", "trixie", "bookworm", "bookworm"]  # haproxy1..6
HAND_BUILT = ("haproxy5", "haproxy6")  # heartbeat set up by hand, then imported
HAND_IP = "10.213.0.105"
PAIRS = {  # floating IP: (preferred node, its peer)
    "10.213.0.104": ("haproxy1", "haproxy2"),  # trixie + trixie
    "10.213.0.106": ("haproxy3", "haproxy4"),  # bookworm + trixie
}
PACKAGE = {"bookworm": "1:3.0.6-13", "trixie": "1:3.0.6-17"}  # Debian's heartbeat versions


def cluster_file(folder: Path, ip: str, nodes: tuple[str, str]) -> Path:
    """examples/lab.yml for ``nodes`` and the floating IP ``ip``."""
    text = LAB_CLUSTER.read_text()
    for old, new in [("haproxy1: 10.213.0.11", f"{nodes[0]}: 10.213.0.1{nodes[0][-1]}"),
                     ("haproxy2: 10.213.0.12", f"{nodes[1]}: 10.213.0.1{nodes[1][-1]}"),
                     ("haproxy1: IPaddr::10.213.0.100/24/eth0",
                      f"{nodes[0]}: IPaddr::{ip}/24/eth0")]:
        assert old in text
        text = text.replace(old, new)
    path = folder / f"{nodes[0]}-{nodes[1]}.yml"
    path.write_text(text)
    return path


def deploy_all(lab: Lab, files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess]:
    """Deploy every pair at once (each its own hbdeploy process), as two teams would."""
    def one(ip: str) -> subprocess.CompletedProcess:
        hosts = ",".join(PAIRS[ip])
        argv = [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(lab.ssh_config_path),
                "-H", hosts, "deploy", "--cluster", str(files[ip])]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              check=False)
    with ThreadPoolExecutor(len(files)) as pool:
        return dict(zip(files, pool.map(one, files), strict=True))


@pytest.fixture(scope="module")
def pairs(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bare nodes of both releases, and each pair's cluster file."""
    wait_for_release_images()
    lab.down()
    lab.up(nodes=len(RELEASES), release=RELEASES)
    folder = tmp_path_factory.mktemp("releases")
    return {ip: cluster_file(folder, ip, nodes) for ip, nodes in PAIRS.items()}


def test_nodes_run_the_release_they_were_booted_with(lab: Lab, pairs: dict[str, Path]) -> None:
    for i, release in enumerate(RELEASES, start=1):
        node = f"haproxy{i}"
        assert lab.release(node) == release
        codename = ssh(lab, node, ". /etc/os-release; echo $VERSION_CODENAME").stdout.strip()
        assert codename == release, f"{node} runs {codename}"


def test_a_trixie_pair_and_a_mixed_pair_deploy_serve_and_stay_unchanged(
        lab: Lab, pairs: dict[str, Path]) -> None:
    results = deploy_all(lab, pairs)
    for ip, result in results.items():
        assert result.returncode == 0, result.stdout + result.stderr
        preferred, peer = PAIRS[ip]
        poll(lambda ip=ip, node=preferred: http_name(ip) == node, 30)
        for node in (preferred, peer):
            version = ssh(lab, node, "dpkg-query -W -f '${Version}' heartbeat").stdout
            assert version.startswith(PACKAGE[lab.release(node)]), (node, version)
    for ip, result in deploy_all(lab, pairs).items():
        assert result.returncode == 0, result.stdout + result.stderr
        preferred, peer = PAIRS[ip]
        assert f"remote commands: {preferred} 1, {peer} 1" in result.stdout, result.stdout
        assert "unchanged: nothing to do on 2 host(s)" in result.stdout, result.stdout


def test_each_pair_fails_over_across_releases_and_comes_home(
        lab: Lab, pairs: dict[str, Path]) -> None:
    """A cut of each holder (both pairs at once): the trixie spare takes the group from a
    trixie holder and from a bookworm one, and gives it back after the heal."""
    for ip, nodes in PAIRS.items():
        poll(lambda nodes=nodes: heartbeat_whole(lab, list(nodes)), 60)
        poll(lambda ip=ip, nodes=nodes: http_name(ip) == nodes[0], 30)
    with ThreadPoolExecutor(len(PAIRS)) as pool:
        cycles = dict(zip(PAIRS, pool.map(
            lambda ip: cut_cycle(lab, ip, list(PAIRS[ip]), PAIRS[ip][0], DEADTIME + 3,
                                 DEADTIME), PAIRS), strict=True))
    for ip, cycle in cycles.items():
        print(f"{ip} {PAIRS[ip]}: {cycle}")
        assert cycle.failover is not None and cycle.failover <= DEADTIME + 2, cycle
        assert cycle.whole_after is not None, cycle
        assert cycle.holders_after == [PAIRS[ip][0]], cycle  # auto_failback on


def sha(lab: Lab, node: str) -> str:
    return ssh(lab, node, "sha256sum /etc/ha.d/ha.cf").stdout


def test_a_rhel_family_host_is_refused_before_any_change(lab: Lab, pairs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """haproxy4 made to say it is Rocky Linux 9: the deploy (with a change for both nodes)
    stops at pre-flight, naming why, and neither node is touched."""
    ip = "10.213.0.106"
    changed = tmp_path / "changed.yml"
    changed.write_text(pairs[ip].read_text().replace("warntime: 3", "warntime: 4"))
    before = {node: sha(lab, node) for node in PAIRS[ip]}
    ssh(lab, "haproxy4", "cp -P /etc/os-release /etc/os-release.hbdeploy-test && "
                         "rm /etc/os-release && printf 'ID=rocky\\nID_LIKE=\"rhel centos "
                         "fedora\"\\nVERSION_ID=9.4\\n' > /etc/os-release")
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(lab.ssh_config_path),
             "-H", "haproxy3,haproxy4", "deploy", "--cluster", str(changed)],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        ssh(lab, "haproxy4", "mv /etc/os-release.hbdeploy-test /etc/os-release")
    assert result.returncode != 0
    assert "haproxy4: rocky 9.4 is of the RHEL family" in result.stderr, result.stderr
    assert "EPEL 6" in result.stderr and "Traceback" not in result.stderr
    assert {node: sha(lab, node) for node in PAIRS[ip]} == before


def test_install_false_uses_the_operators_heartbeat_and_checks_it(
        lab: Lab, pairs: dict[str, Path], tmp_path: Path) -> None:
    """install: false on the trixie pair: a deploy that changes ha.cf installs nothing; with
    one of heartbeat's tools gone from haproxy2 pre-flight refuses, naming it."""
    ip = "10.213.0.104"
    provided = tmp_path / "provided.yml"
    provided.write_text(pairs[ip].read_text() + "install: false\n")
    argv = [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(lab.ssh_config_path),
            "-H", "haproxy1,haproxy2", "deploy", "--cluster", str(provided)]
    tool = "/usr/share/heartbeat/hb_takeover"
    ssh(lab, "haproxy2", f"mv {tool} {tool}.hbdeploy-test")
    try:
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        ssh(lab, "haproxy2", f"mv {tool}.hbdeploy-test {tool}")
    assert refused.returncode != 0
    assert f"haproxy2: install: false (nodes.haproxy2.install or install) says the operator " \
           f"provides heartbeat, but this host lacks {tool}" in refused.stderr, refused.stderr
    before = sha(lab, "haproxy1")
    provided.write_text(provided.read_text().replace("warntime: 3", "warntime: 4"))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing" not in result.stdout and sha(lab, "haproxy1") != before
    poll(lambda: http_name(ip) == "haproxy1", 30)


HAND_BUILD = r"""set -e
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends heartbeat net-tools >/dev/null 2>&1
cat > /etc/ha.d/ha.cf <<CF
# ha.cf, written by hand
logfacility     local0
keepalive 1
warntime 3
deadtime 5
initdead 10
udpport 694
ucast eth0 $1
auto_failback on
node haproxy5
node haproxy6
ping 10.213.0.1
respawn hacluster /usr/libexec/heartbeat/ipfail
CF
printf 'haproxy5   IPaddr::10.213.0.105/24/eth0\n' > /etc/ha.d/haresources
printf '# the lab key\nauth 2\n2 sha1 hand-built-key-of-the-lab-0123\n' > /etc/ha.d/authkeys
chmod 600 /etc/ha.d/authkeys
systemctl restart heartbeat
"""


def hb_pid(lab: Lab, node: str) -> str:
    return ssh(lab, node, "systemctl show -p MainPID --value heartbeat").stdout.strip()


def test_a_hand_built_cluster_is_imported_and_adopted_without_a_reload(
        lab: Lab, pairs: dict[str, Path], tmp_path: Path) -> None:
    """A cluster set up with plain ssh (apt, files by hand, auth 2): `hbdeploy import` writes
    a cluster file and the key (never shown); `deploy --check` of it would reload nothing,
    and the deploy adopts the nodes with heartbeat untouched (same PIDs) and the floating IP
    answered all along."""
    peers = {"haproxy5": "10.213.0.16", "haproxy6": "10.213.0.15"}
    with ThreadPoolExecutor(2) as pool:
        built = list(pool.map(lambda n: subprocess.run(
            lab.ssh_command(n, f"sh -s {peers[n]}"), input=HAND_BUILD, capture_output=True,
            text=True, timeout=300, check=False), HAND_BUILT))
    for result in built:
        assert result.returncode == 0, result.stderr
    poll(lambda: http_name(HAND_IP) == "haproxy5", 90)
    ops = tmp_path / "ops"
    ops.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).parent / "hbdeploy"), "-S",
                str(lab.ssh_config_path), "-H", ",".join(HAND_BUILT), *args]
        return subprocess.run(argv, cwd=ops, capture_output=True, text=True, timeout=300,
                              check=False)

    imported = run("import")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    key = ops / "config" / "heartbeat.key"
    assert key.read_text() == "hand-built-key-of-the-lab-0123\n"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "hand-built-key" not in imported.stdout + imported.stderr
    assert "haproxy5: ha.cf: crm off (heartbeat's default: no change)" in imported.stdout
    assert "cannot express" not in imported.stdout and "the nodes differ" not in imported.stdout
    text = (ops / "config" / "heartbeat.yml").read_text()
    assert "auth_index: 2" in text and "haproxy5: IPaddr::10.213.0.105/24/eth0" in text
    preview = run("deploy", "--check")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "would reload" not in preview.stdout and "would restart" not in preview.stdout
    assert preview.stdout.count("heartbeat would not notice") == 6, preview.stdout
    pids = {n: hb_pid(lab, n) for n in HAND_BUILT}
    with HttpProbe(HAND_IP) as probe:
        adopted = run("deploy")
        poll(lambda: heartbeat_whole(lab, list(HAND_BUILT)), 30)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert {n: hb_pid(lab, n) for n in HAND_BUILT} == pids, adopted.stdout
    assert probe.failures == 0 and probe.servers() == {"haproxy5"}, adopted.stdout
    again = run("deploy")
    assert "remote commands: haproxy5 1, haproxy6 1" in again.stdout, again.stdout
