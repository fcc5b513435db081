"""Rendering rules that matter to heartbeat itself, beyond the golden files."""

from __future__ import annotations

import pytest

from hbdeploy import validate
from hbdeploy.errors import ConfigError
from hbdeploy.model import Duration, fill_timings
from hbdeploy.render import mask_authkeys, render_node
from hbdeploy.source import Source, from_document


def cluster(**over: object):
    doc = {"nodes": {"n1": "10.9.0.1", "n2": "10.9.0.2", "n3": "10.9.0.3"},
           "resources": {"n1": "10.9.0.100"}, "password": "pw-123"}
    doc.update(over)
    return validate.load(from_document(doc, None), environ={})  # type: ignore[arg-type]


def lines(text: str, word: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.split()[:1] == [word]]


def test_ucast_lists_every_peer_but_self() -> None:
    c = cluster()
    for node in c.nodes:
        hacf = render_node(c, node.name)["ha.cf"].content
        peers = {n.ip for n in c.nodes} - {node.ip}
        assert {ln.split()[2] for ln in lines(hacf, "ucast")} == peers
        assert not lines(hacf, "bcast") and not lines(hacf, "mcast")


@pytest.mark.parametrize("mode", ["ucast", "mcast", "bcast"])
def test_udpport_precedes_every_media_line_and_only_one_medium(mode: str) -> None:
    hacf = render_node(cluster(mode=mode), "n1")["ha.cf"].content.splitlines()
    port_at = next(i for i, ln in enumerate(hacf) if ln.startswith("udpport "))
    media = [i for i, ln in enumerate(hacf) if ln.split()[:1] in (["ucast"], ["mcast"], ["bcast"])]
    assert media and all(i > port_at for i in media)
    assert {hacf[i].split()[0] for i in media} == {mode}


def test_crm_off_and_node_lines() -> None:
    hacf = render_node(cluster(), "n2")["ha.cf"].content
    assert "crm off" in hacf.splitlines()
    assert lines(hacf, "node") == ["node n1", "node n2", "node n3"]
    assert not lines(hacf, "respawn")


def test_ipfail_only_with_ping() -> None:
    hacf = render_node(cluster(ping="10.9.0.254"), "n1")["ha.cf"].content
    assert lines(hacf, "respawn") == ["respawn hacluster /usr/libexec/heartbeat/ipfail"]


def test_haresources_identical_everywhere_and_authkeys_0600() -> None:
    c = cluster(resources={"n1": "10.9.0.100", "n2": ["IPaddr2::10.9.0.101/24", "nginx"]})
    texts = {render_node(c, n)["haresources"].content for n in c.node_names}
    assert len(texts) == 1
    assert "n1 IPaddr::10.9.0.100\nn2 IPaddr2::10.9.0.101/24 nginx\n" in texts.pop()
    auth = render_node(c, "n1")["authkeys"]
    assert auth.mode == 0o600
    assert auth.content.endswith("auth 1\n1 sha1 pw-123\n")


def test_password_never_printed_by_model_or_masked_output() -> None:
    c = cluster()
    assert "pw-123" not in repr(c) and "pw-123" not in str(c.password)
    auth = render_node(c, "n1")["authkeys"]
    assert "pw-123" not in auth.shown() and "pw-123" not in mask_authkeys(auth.content)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(c.password)


def test_header_marks_every_file_as_managed() -> None:
    for f in render_node(cluster(), "n1").values():
        assert f.content.startswith("# Managed by hbdeploy")


def test_password_from_environment_and_file(tmp_path) -> None:
    doc = {"nodes": {"a": "10.0.0.1", "b": "10.0.0.2"}, "resources": {"a": "10.0.0.9"}}
    c = validate.load(Source(tmp_path / "x.yml", doc, ""), environ={"HBDEPLOY_PASSWORD": "envpw"})
    assert c.password.reveal() == "envpw"
    (tmp_path / "pw").write_text("filepw\n")
    (tmp_path / "pw").chmod(0o600)
    doc2 = dict(doc, password_file="pw")
    c2 = validate.load(Source(tmp_path / "x.yml", doc2, ""), environ={})
    assert c2.password.reveal() == "filepw"
    with pytest.raises(ConfigError):
        validate.load(Source(tmp_path / "x.yml", doc, ""), environ={})


@pytest.mark.parametrize(("given", "expected"), [
    ({}, ("1s", "3s", "5s", "60s")),
    ({"deadtime": "1"}, ("200ms", "600ms", "1s", "60s")),
    ({"deadtime": "60"}, ("1s", "36s", "60s", "120s")),
    # heartbeat's old defaults (2 / 10 / 30 / 120) stay valid when a file sets only some
    ({"keepalive": "4"}, ("4s", "12s", "20s", "60s")),
    ({"warntime": "10"}, ("1s", "10s", "17s", "60s")),
    ({"keepalive": "4", "deadtime": "5"}, ("4s", "4500ms", "5s", "60s")),
    ({"deadtime": "10", "warntime": "5", "initdead": "20"}, ("1s", "5s", "10s", "20s")),
])
def test_silent_timings_follow_the_ones_set(given: dict[str, str],
                                            expected: tuple[str, ...]) -> None:
    t = fill_timings({key: Duration(int(float(v) * 1000)) for key, v in given.items()})
    assert tuple(str(d) for d in (t.keepalive, t.warntime, t.deadtime, t.initdead)) == expected
