"""Hot spares end to end: a spare prepared by deploy (heartbeat installed, masked), the
holder powered off, `replace` puts the spare in its place with the floating IP served, and
the dead node, powered on again, is kept out by the member gate: never two holders."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.outage import HolderWatch, HttpProbe, holders

from .conftest import FLOATING_IP, LAB_CLUSTER, LAB_NODES, cli, poll, ssh

NODES = ["haproxy1", "haproxy2", "haproxy3"]
SPARE = "  haproxy3: 10.213.0.13\n"


def spared(tmp_path: Path) -> Path:
    """examples/lab.yml with haproxy3 as a spare."""
    path = tmp_path / "spared.yml"
    path.write_text(LAB_CLUSTER.read_text() + "spares:\n" + SPARE)
    return path


def replaced(tmp_path: Path) -> Path:
    """The file after the operator's edit: haproxy3 in haproxy1's place, no spare left."""
    text = LAB_CLUSTER.read_text()
    for old, new in (("  haproxy1: 10.213.0.11\n", SPARE),
                     ("  haproxy1: IPaddr::", "  haproxy3: IPaddr::")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "replaced.yml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def fresh(lab: Lab) -> Iterator[Lab]:
    """Bare nodes before and after: this module changes who the members are (a later
    module's deploy of examples/lab.yml would meet haproxy3 still running heartbeat and
    sending to haproxy1: "bad node [haproxy3]")."""
    lab.down()
    lab.up(nodes=LAB_NODES)
    yield lab
    lab.down()
    lab.up(nodes=LAB_NODES)


def test_a_spare_replaces_a_dead_holder_and_the_dead_node_stays_out(
        fresh: Lab, tmp_path: Path) -> None:
    lab = fresh
    cluster = spared(tmp_path)
    result = cli(lab, "deploy", cluster=cluster, hosts=None)  # every node and spare
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spare ready" in result.stdout
    assert ssh(lab, "haproxy3", "systemctl is-enabled heartbeat", check=False
               ).stdout.strip() == "masked"
    assert ssh(lab, "haproxy3", "ls /etc/ha.d/ha.cf", check=False).returncode != 0
    again = cli(lab, "deploy", cluster=cluster, hosts=None)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "remote commands: 10.213.0.11 1, 10.213.0.12 1, 10.213.0.13 1" in again.stdout
    poll(lambda: holders(FLOATING_IP, NODES) == ["haproxy1"], 30)

    edited = replaced(tmp_path)
    not_edited = cli(lab, "replace", "haproxy1", "--with", "haproxy3", "--cluster",
                     str(cluster), hosts=None)
    assert not_edited.returncode == 1 and "edit " in not_edited.stderr, not_edited.stderr
    alive = cli(lab, "replace", "haproxy1", "--with", "haproxy3", "--cluster", str(edited),
                hosts=None)
    assert alive.returncode == 1 and "haproxy1 active: it is not dead" in alive.stderr, (
        alive.stdout + alive.stderr)

    with (HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic,
          HolderWatch(lab, FLOATING_IP) as watch):
        lab.kill("haproxy1")
        poll(lambda: holders(FLOATING_IP, NODES) == ["haproxy2"], 30)
        poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy1", check=False
                         ).stdout.strip() == "dead", 30)
        begun = time.monotonic()
        result = cli(lab, "replace", "haproxy1", "--with", "haproxy3", "--cluster",
                     str(edited), hosts=None)
        done = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[haproxy1] does not answer: not fenced now" in result.stdout
        assert "haproxy3 replaced haproxy1: a full pair again" in result.stdout
        assert holders(FLOATING_IP, NODES) == ["haproxy3"]  # the preferred node now
        # haproxy2 holds nothing and must not believe it holds the group (it would take
        # no failover over: converge.phantom_claims)
        claim = ssh(lab, "haproxy2", "cl_status rscstatus").stdout.strip()
        assert claim not in ("all", "foreign"), (claim, result.stdout)
        # one planned move (auto_failback on: to haproxy3), nothing else
        assert traffic.unanswered(begun, done) < 2, traffic.failed_at()
        code = cli(lab, "status", "--cluster", str(edited), hosts=None).returncode
        assert code == 0

        lab.start("haproxy1")  # boots with its old files: heartbeat starts, the gate refuses
        poll(lambda: "gate: not starting heartbeat" in ssh(
            lab, "haproxy1", "journalctl -b -u heartbeat -o cat", check=False).stdout, 90)
        back = time.monotonic()
        while time.monotonic() - back < 15:
            assert ssh(lab, "haproxy1", "systemctl is-active heartbeat", check=False
                       ).stdout.strip() != "active"
            time.sleep(1)
        assert traffic.unanswered(done) == 0, traffic.failed_at()
    assert watch.samples and watch.max_holders == 1, {s for s in watch.samples if len(s) > 1}

    out = cli(lab, "decommission", "haproxy1", "--cluster", str(edited), hosts=None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ssh(lab, "haproxy1", "systemctl is-enabled heartbeat", check=False
               ).stdout.strip() == "disabled"
    poll(lambda: cli(lab, "status", "--cluster", str(edited), hosts=None).returncode == 0, 60)

    # The old member becomes a spare (its files moved aside, heartbeat masked); then a
    # member that answers SSH but whose heartbeat its peer declared dead is replaced by it:
    # fenced over SSH, and the holder, haproxy3, keeps serving throughout.
    respared = tmp_path / "respared.yml"
    respared.write_text(edited.read_text() + "spares:\n  haproxy1: 10.213.0.11\n")
    result = cli(lab, "deploy", cluster=respared, hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "moved a member's ha.cf, haresources, authkeys" in result.stdout, result.stdout
    assert ssh(lab, "haproxy1", "systemctl is-enabled heartbeat", check=False
               ).stdout.strip() == "masked"
    swapped = tmp_path / "swapped.yml"
    swapped.write_text(edited.read_text().replace("  haproxy2: 10.213.0.12\n",
                                                  "  haproxy1: 10.213.0.11\n"))
    with (HttpProbe(FLOATING_IP, interval=0.05, timeout=0.5) as traffic,
          HolderWatch(lab, FLOATING_IP) as watch):
        ssh(lab, "haproxy2", "systemctl stop heartbeat")
        poll(lambda: ssh(lab, "haproxy3", "cl_status nodestatus haproxy2", check=False
                         ).stdout.strip() == "dead", 30)
        result = cli(lab, "replace", "haproxy2", "--with", "haproxy1", "--cluster",
                     str(swapped), hosts=None)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[haproxy2] fenced" in result.stdout, result.stdout
        claim = ssh(lab, "haproxy1", "cl_status rscstatus").stdout.strip()
        assert claim not in ("all", "foreign"), (claim, result.stdout)
    assert traffic.failures == 0 and traffic.servers() == {"haproxy3"}, traffic.failed_at()
    assert set(watch.samples) == {("haproxy3",)}
    assert ssh(lab, "haproxy2", "systemctl is-enabled heartbeat", check=False
               ).stdout.strip() == "masked"
    poll(lambda: cli(lab, "status", "--cluster", str(swapped), hosts=None).returncode == 0,
         60)
