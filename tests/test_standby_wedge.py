"""The judgement of a standby exchange heartbeat never finishes (standby_wedge.py); the lab
test (test_2_operations) proves the repair on real heartbeat."""

from __future__ import annotations

import subprocess

from test_day2_logic import cluster

from hbdeploy.standby_wedge import PROBE, patience, wedges
from hbdeploy.status import NodeView, parse_view


def waited(journal: str, me: str, now: int) -> str:
    """What the probe's awk reports for ``journal`` (journalctl -o short-unix lines)."""
    awk = PROBE.split("| \\\n", 1)[1].replace('"${now:-$(date +%s)}"', str(now)).replace(
        '"${node:-$(uname -n)}"', me)
    return subprocess.run(["sh", "-c", awk], input=journal, capture_output=True, text=True,
                          check=True).stdout.strip()


def line(t: int, node: str, text: str) -> str:
    return f"{t}.000000 {node} heartbeat[9]: [9]: {text}\n"


def test_the_probe_dates_an_exchange_from_the_agreement_and_clears_on_its_end() -> None:
    agreed = line(1000, "n2", "info: n1 wants to go standby [foreign]")
    assert waited(agreed, "n2", 1030) == "standby_wait 30"
    assert waited(agreed, "n1", 1030) == ""  # its own request: heartbeat times it out (10 s)
    ended = agreed + line(1002, "n2", "info: standby: acquire [foreign] resources from n1")
    assert waited(ended, "n2", 1030) == ""
    restarted = agreed + line(1003, "n2", "info: Configuration validated. Starting heartbeat")
    assert waited(restarted, "n2", 1030) == ""
    ignored = line(1010, "n2", "WARN: Standby in progress- new request from n1 ignored "
                               "[3589 seconds left]")
    assert waited(ignored, "n2", 1030) == "standby_wait 31"  # began 11 s before that line
    own = line(1010, "n2", "WARN: Standby in progress- new request from n2 ignored "
                           "[8 seconds left]")
    assert waited(own, "n2", 1030) == ""  # a request of its own, still within 10 s


def node(name: str, resources: str, wait: int = 0) -> NodeView:
    return NodeView(name, name, reachable=True, heartbeat=True, resources=resources,
                    standby_wait=wait)


def test_only_a_stuck_node_beside_stable_peers_is_a_wedge() -> None:
    c = cluster()  # deadtime 5 s by default: patience 10 s (2 x deadtime, 10 s at least)
    assert patience(c) == 10
    assert patience(cluster(warntime=10, deadtime=30, initdead=60)) == 60
    old = int(patience(c)) + 1
    found = wedges(c, [node("n1", "local"), node("n2", "transition", old)])
    assert [(w.stuck, w.sender) for w in found] == [("n2", "n1")]
    assert "ended it with two standby 'done' messages from n1" in found[0].repair_text()
    assert not wedges(c, [node("n1", "local"), node("n2", "transition", old - 2)])  # young
    assert not wedges(c, [node("n1", "transition"), node("n2", "transition", old)])  # asker
    assert not wedges(c, [node("n1", "local"), node("n2", "all", old)])  # it did finish
    both = wedges(c, [node("n1", "transition", old), node("n2", "transition", old)])
    assert [(w.stuck, w.sender) for w in both] == [("n1", "n2"), ("n2", "n1")]
    down = node("n1", "")
    down.heartbeat = False
    assert not wedges(c, [down, node("n2", "transition", old)])


def test_status_reads_the_probe_lines() -> None:
    view = parse_view(cluster(), "n2", "n2", "hb up\nresources transition\nstandby_wait 42\n")
    assert (view.resources, view.standby_wait) == ("transition", 42)
