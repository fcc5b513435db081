"""A member taken out of the cluster file without `decommission` (test_2_operations' helpers;
on the other lab than test_2_operations, whose membership tests are the suite's longest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbdeploy.lab import Lab

from .conftest import cli, poll, ssh
from .test_2_operations import (
    FILES,
    NODES,
    _cut_of_haproxy1_is_taken_over,
    _three_without_ping,
    serving,  # noqa: F401 (a fixture: usefixtures names it)
    settle,
    status,
)


@pytest.mark.usefixtures("serving")
def test_a_member_taken_out_of_the_file_without_decommission(lab: Lab, tmp_path: Path) -> None:
    """haproxy3 was bootstrapped, then taken out of the cluster file and the file deployed
    to the other two instead of `decommission` (seen in the lab: the deploy succeeded,
    haproxy3 stayed a member to heartbeat, and once it stopped, haproxy2 claimed haproxy1's
    group, would not take it over, and `status` said healthy). Now: while haproxy3 runs
    heartbeat the deploy is refused before any change, naming decommission; once it is
    stopped, `status` says the pair still lists it, and a deploy drops it (hb_delnode),
    repairs haproxy2's claim, and a cut of haproxy1 is taken over. No `ping`: no ipfail
    ends the claim by itself."""
    try:
        noping = _three_without_ping(lab, tmp_path)
        before = ssh(lab, "haproxy1", FILES).stdout
        refused = cli(lab, "deploy", cluster=noping)
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "no host was changed" in said, said
        assert "lists haproxy3 (active)" in said and "hbdeploy decommission haproxy3" in said
        assert ssh(lab, "haproxy1", FILES).stdout == before
        # haproxy3 goes away for good (its guard first: it would not restart heartbeat
        # after a stop, but it is gone with the node anyway)
        ssh(lab, "haproxy3", "systemctl disable --now hbdeploy-guard.service "
                             "heartbeat.service")
        poll(lambda: all(ssh(lab, n, "cl_status nodestatus haproxy3", check=False
                             ).stdout.strip() == "dead" for n in NODES), 30, 0.5)
        code, report = status(lab, noping)
        assert code == 1 and any("still lists haproxy3 (dead)" in p
                                 for p in report["problems"]), report["problems"]
        result = cli(lab, "deploy", cluster=noping)
        said = result.stdout + result.stderr
        assert result.returncode == 0, said
        assert "hb_delnode haproxy3 there" in said, said
        for node in NODES:
            assert "haproxy3" not in ssh(lab, node, "cl_status listnodes").stdout.split()
        claims = {n: ssh(lab, n, "cl_status rscstatus").stdout.strip() for n in NODES}
        assert claims["haproxy2"] not in ("all", "foreign"), (claims, said)
        assert status(lab, noping)[0] == 0
        _cut_of_haproxy1_is_taken_over(lab)
    finally:
        settle(lab)  # examples/lab.yml again (ipfail), haproxy1 serving
