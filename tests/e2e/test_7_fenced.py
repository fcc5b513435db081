"""`replace` in a cluster deployed before it had spares: its members have no member gate,
so a dead node that cannot be reached is only replaced on the operator's word (--fenced)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdeploy.lab import Lab
from hbdeploy.lab.outage import holders

from .conftest import FLOATING_IP, LAB_NODES, cli, poll, ssh
from .test_6_spares import NODES, replaced, spared


@pytest.fixture(scope="module")
def fresh(lab: Lab) -> Iterator[Lab]:
    """Bare nodes before and after (membership changes here)."""
    lab.down()
    lab.up(nodes=LAB_NODES)
    yield lab
    lab.down()
    lab.up(nodes=LAB_NODES)


def test_an_unreachable_dead_node_without_the_gate_needs_fenced(fresh: Lab,
                                                                 tmp_path: Path) -> None:
    lab = fresh
    result = cli(lab, "deploy")  # examples/lab.yml: no spares, so no member gate
    assert result.returncode == 0, result.stdout + result.stderr
    result = cli(lab, "deploy", cluster=spared(tmp_path), hosts="haproxy3")  # the spare only
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gate" not in ssh(lab, "haproxy2",
                             "cat /etc/systemd/system/heartbeat.service.d/hbdeploy.conf").stdout
    poll(lambda: holders(FLOATING_IP, NODES) == ["haproxy1"], 30)
    lab.kill("haproxy1")
    poll(lambda: ssh(lab, "haproxy2", "cl_status nodestatus haproxy1", check=False
                     ).stdout.strip() == "dead", 30)
    edited = replaced(tmp_path)
    refused = cli(lab, "replace", "haproxy1", "--with", "haproxy3", "--cluster", str(edited),
                  hosts=None)
    assert refused.returncode == 1 and "rerun with --fenced" in refused.stderr, (
        refused.stdout + refused.stderr)
    assert ssh(lab, "haproxy3", "systemctl is-enabled heartbeat", check=False
               ).stdout.strip() == "masked"  # nothing changed
    result = cli(lab, "replace", "haproxy1", "--with", "haproxy3", "--fenced", "--cluster",
                 str(edited), hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--fenced: the operator says it cannot come back" in result.stdout
    assert holders(FLOATING_IP, NODES) == ["haproxy3"]
    poll(lambda: cli(lab, "status", "--cluster", str(edited), hosts=None).returncode == 0, 60)
