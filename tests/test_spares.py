"""Hot spares without a host: the model, the member gate in the rendered files, replace's
refusals before any host is touched."""

from __future__ import annotations

import pytest

from hbdeploy import config, membership, supervision, validate
from hbdeploy.deploy import DeployError
from hbdeploy.render import render_node
from hbdeploy.source import from_document

BASE = {"nodes": {"haproxy1": "10.9.0.1", "haproxy2": "10.9.0.2"},
        "resources": {"haproxy1": "IPaddr::10.9.0.100/24/eth0"}, "password": "pw-123456",
        "ping": "10.9.0.254"}


def cluster(**over: object):
    doc = {**BASE, **over}
    return validate.load(from_document(doc, None), environ={})  # type: ignore[arg-type]


def test_a_spare_is_no_member_of_the_pair() -> None:
    model = cluster(spares={"haproxy3": "10.9.0.3"})
    assert model.node_names == ("haproxy1", "haproxy2")
    assert model.spare("haproxy3").ip == "10.9.0.3"
    hacf = render_node(model, "haproxy1")["ha.cf"].content
    assert "haproxy3" not in hacf and "10.9.0.3" not in hacf
    assert "spares (prepared, not members): haproxy3" in config.summary(model)


def test_the_member_gate_is_rendered_only_with_spares() -> None:
    plain = supervision.render(cluster(), "haproxy1", "", "/usr/libexec/heartbeat/heartbeat")
    assert "gate" not in plain["dropin"].content
    assert "= gate ]" not in plain["guard"].content
    spared = supervision.render(cluster(spares={"haproxy3": "10.9.0.3"}), "haproxy1", "",
                                "/usr/libexec/heartbeat/heartbeat")
    assert f"ExecStartPre={supervision.GUARD_PATH} gate" in spared["dropin"].content
    guard = spared["guard"].content
    assert "= gate ]" in guard and "' 694 10 $PEER_IPS" in guard
    # the gate runs after the cleanup of a killed heartbeat (its port must be free)
    dropin = spared["dropin"].content
    assert dropin.index("guard cleanup") < dropin.index("guard gate")


def test_the_gate_waits_at_least_deadtime() -> None:
    guard = supervision.render(cluster(spares={"haproxy3": "10.9.0.3"}, deadtime=30,
                                       initdead=60), "haproxy1", "",
                               "/usr/libexec/heartbeat/heartbeat")["guard"].content
    assert "' 694 30 $PEER_IPS" in guard


def test_rename_changes_only_the_preferred_node() -> None:
    text = "# managed\nhaproxy1 IPaddr::10.9.0.100/24/eth0 haproxy1-svc\nhaproxy2 x\n" \
           "haproxy1\tIPaddr::10.9.0.101\n"
    assert membership.rename(text, {"haproxy1": "haproxy3"}) == (
        "# managed\nhaproxy3 IPaddr::10.9.0.100/24/eth0 haproxy1-svc\nhaproxy2 x\n"
        "haproxy3\tIPaddr::10.9.0.101\n")


@pytest.mark.parametrize("nodes, spares", [
    ({"haproxy1": "10.9.0.1", "haproxy2": "10.9.0.2"}, {"haproxy3": "10.9.0.3"}),
    ({"haproxy1": "10.9.0.1", "haproxy2": "10.9.0.2", "haproxy3": "10.9.0.3"}, None)])
def test_replace_refuses_a_file_not_yet_edited(nodes, spares) -> None:
    over = {"nodes": nodes, **({"spares": spares} if spares else {})}
    with pytest.raises(DeployError) as raised:
        membership._refuse_unless_edited(cluster(**over), "haproxy1", "haproxy3")
    message = str(raised.value)
    assert "put `haproxy3: 10.9.0.3` in place of haproxy1's line" in message
    assert "rename haproxy1 to haproxy3" in message


def test_replace_accepts_the_edited_file() -> None:
    edited = cluster(nodes={"haproxy3": "10.9.0.3", "haproxy2": "10.9.0.2"},
                     resources={"haproxy3": "IPaddr::10.9.0.100/24/eth0"})
    membership._refuse_unless_edited(edited, "haproxy1", "haproxy3")
