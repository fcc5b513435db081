"""hbdeploy import's reading of hand-written files (the lab test imports a real cluster)."""

from __future__ import annotations

from hbdeploy import adopt, source, validate

HACF = """# by hand
logfacility daemon
keepalive 500ms
deadtime 10
udpport 695
ucast eth1 10.0.0.{peer}
auto_failback off
node lb1
node lb2
ping 10.0.0.254
respawn hacluster /usr/libexec/heartbeat/ipfail
compression bz2
crm no
"""


def hosts(**changes: str) -> list[adopt.HostFiles]:
    out = []
    for me, peer in (("lb1", 2), ("lb2", 1)):
        hacf = HACF.format(peer=peer)
        out.append(adopt.HostFiles(
            me, me, [("lo", "127.0.0.1"), ("eth1", f"10.0.0.{3 - peer}")],
            {"ha.cf": changes.get(f"{me}_hacf", hacf),
             "haresources": "lb1 IPaddr::10.0.0.100/24/eth1 \\\n   haproxy\n",
             "authkeys": changes.get(f"{me}_authkeys", "auth 3\n3 md5 a-hand-made-key-01234\n")},
            True))
    return out


def test_settings_and_what_cannot_be_expressed() -> None:
    found = hosts()
    adoption = adopt.adopt(found)
    s = adoption.settings
    assert s["nodes"] == {"lb1": "10.0.0.1", "lb2": "10.0.0.2"} and s["interface"] == "eth1"
    assert s["resources"] == {"lb1": ["IPaddr::10.0.0.100/24/eth1", "haproxy"]}
    assert (s["keepalive"], s["deadtime"], s["udpport"]) == ("500ms", 10, 695)
    assert (s["auto_failback"], s["logfacility"], s["ping"]) == ("off", "daemon", "10.0.0.254")
    assert (s["auth_method"], s["auth_index"]) == ("md5", 3)
    assert adoption.password.reveal() == "a-hand-made-key-01234"
    assert "a-hand-made-key" not in repr(adoption) + repr(found) + " ".join(
        adopt.describe(adoption))
    assert adoption.unexpressed == ["lb1: ha.cf: compression bz2"]
    cluster = validate.load(source.from_document(
        {**{k: v for k, v in s.items() if k != "password_file"},
         "password": adoption.password.reveal()}, None), environ={})
    adopt.compare(found, adoption, cluster)
    assert "lb2: ha.cf: compression bz2" in adoption.unexpressed
    assert "lb1: ha.cf: crm off (heartbeat's default: no change)" in adoption.added
    assert adoption.differences == []


def test_where_the_nodes_differ() -> None:
    found = hosts(lb2_hacf=HACF.format(peer=1).replace("deadtime 10", "deadtime 12"),
                  lb2_authkeys="auth 3\n3 md5 another-key-0123456789\n")
    adoption = adopt.adopt(found)
    cluster = validate.load(source.from_document(
        {**{k: v for k, v in adoption.settings.items() if k != "password_file"},
         "password": "x" * 20}, None), environ={})
    adopt.compare(found, adoption, cluster)
    assert "ha.cf: only lb2 has: deadtime 12" in adoption.differences
    assert "ha.cf: only lb1 has: deadtime 10" in adoption.differences
    assert any("lb2: authkeys differs" in d for d in adoption.differences)
    assert not any("another-key" in line for line in adopt.describe(adoption))
