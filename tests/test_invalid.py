"""Invalid cluster files: exit 2, every problem named by key path, never a traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hbdeploy.main import program

GOOD = """\
nodes:
  haproxy1: 10.0.0.1
  haproxy2: 10.0.0.2
resources:
  haproxy1: 10.0.0.100
password: sekret
"""


def with_lines(*extra: str, base: str = GOOD) -> str:
    return base + "".join(line + "\n" for line in extra)


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


# (id, file text, text the message must hold: the key path and, where useful, the value)
CASES: list[tuple[str, str, list[str]]] = [
    ("bad-node-ip", replace("10.0.0.2", "12.34.56.300"), ["nodes.haproxy2: '12.34.56.300'"]),
    ("node-ip-int", replace("10.0.0.2", "42"), ["nodes.haproxy2: 42"]),
    ("node-ip-ipv6", replace("10.0.0.2", "'::1'"), ["nodes.haproxy2: '::1'"]),
    ("one-node", replace("  haproxy2: 10.0.0.2\n", ""), ["nodes: 1 node(s)"]),
    ("nodes-list", replace("nodes:\n  haproxy1: 10.0.0.1\n  haproxy2: 10.0.0.2",
                           "nodes: [10.0.0.1, 10.0.0.2]"), ["nodes: ", "is a list"]),
    ("nodes-missing", replace("nodes:\n  haproxy1: 10.0.0.1\n  haproxy2: 10.0.0.2\n", ""),
     ["nodes: missing"]),
    ("node-name-space", replace("haproxy2: 10.0.0.2", "'haproxy 2': 10.0.0.2"),
     ["nodes.'haproxy 2': 'haproxy 2' is not a valid node name"]),
    ("node-name-newline", replace("haproxy2: 10.0.0.2", "\"h2\\nucast eth0 1.2.3.4\": 10.0.0.2"),
     ["is not a valid node name"]),
    # A trailing newline alone: `$` in a regex matches before it (fullmatch does not).
    ("node-name-trailing-newline", replace("haproxy2: 10.0.0.2", "\"haproxy2\\n\": 10.0.0.2"),
     ["nodes.'haproxy2\\n': 'haproxy2\\n' is not a valid node name"]),
    ("interface-trailing-newline", with_lines("interface: \"eth0\\n\""),
     ["interface: 'eth0\\n' is not a network interface name"]),
    ("node-name-int", replace("haproxy2: 10.0.0.2", "7: 10.0.0.2"), ["nodes.7: 7"]),
    ("duplicate-node-ip", replace("10.0.0.2", "10.0.0.1"), ["nodes.haproxy2: '10.0.0.1'"]),
    ("node-long-no-ip", replace("haproxy2: 10.0.0.2", "haproxy2: {interface: eth1}"),
     ["nodes.haproxy2.ip: missing"]),
    ("node-long-bad-iface", replace("haproxy2: 10.0.0.2",
                                    "haproxy2: {ip: 10.0.0.2, interface: 'eth 1'}"),
     ["nodes.haproxy2.interface: 'eth 1'"]),
    ("node-long-unknown", replace("haproxy2: 10.0.0.2", "haproxy2: {ip: 10.0.0.2, iface: eth1}"),
     ["nodes.haproxy2.iface: unknown key", "did you mean 'interface'"]),
    ("duplicate-key", with_lines("password: other"), ["duplicate key 'password'"]),
    ("resources-missing", replace("resources:\n  haproxy1: 10.0.0.100\n", ""),
     ["resources: missing"]),
    ("resources-string", replace("resources:\n  haproxy1: 10.0.0.100", "resources: 10.0.0.100"),
     ["resources: '10.0.0.100' is a string"]),
    ("resource-unknown-node", replace("haproxy1: 10.0.0.100", "haproxy9: 10.0.0.100"),
     ["resources.haproxy9: preferred node 'haproxy9' is not one of nodes"]),
    ("resource-bad-ip", replace("10.0.0.100", "10.0.0.300"), ["resources.haproxy1: '10.0.0.300'"]),
    ("resource-space", replace("haproxy1: 10.0.0.100", "haproxy1: 'haproxy; rm -rf /'"),
     ["resources.haproxy1: 'haproxy; rm -rf /' is not a resource"]),
    ("resource-list-item", replace("haproxy1: 10.0.0.100", "haproxy1: [10.0.0.100, 5]"),
     ["resources.haproxy1[1]: 5"]),
    ("resource-empty-list", replace("haproxy1: 10.0.0.100", "haproxy1: []"),
     ["resources.haproxy1: an empty list"]),
    ("ipaddr-bad", replace("10.0.0.100", "IPaddr::10.0.0"), ["resources.haproxy1: '10.0.0'"]),
    ("ipaddr-cidr", replace("10.0.0.100", "IPaddr2::10.0.0.100/33"),
     ["resources.haproxy1: 'IPaddr2::10.0.0.100/33': netmask '33'"]),
    ("floating-is-node-ip", replace("10.0.0.100", "10.0.0.1"),
     ["resources.haproxy1: floating IP '10.0.0.1' is the address of node haproxy1"]),
    ("floating-twice", replace("haproxy1: 10.0.0.100",
                               "haproxy1: 10.0.0.100\n  haproxy2: IPaddr2::10.0.0.100"),
     ["resources.haproxy2: floating IP '10.0.0.100' is already in the group of haproxy1"]),
    ("password-missing", replace("password: sekret\n", ""), ["password: missing"]),
    ("password-int", replace("password: sekret", "password: 12345"), ["password: value hidden"]),
    ("password-space", replace("password: sekret", "password: 'two words'"),
     ["password: value hidden"]),
    ("password-and-file", with_lines("password_file: /etc/pw"), ["password_file: password and"]),
    ("password-file-missing", replace("password: sekret", "password_file: /nonexistent/pw"),
     ["password_file: '/nonexistent/pw' cannot be read"]),
    ("password-file-nul", replace("password: sekret", 'password_file: "a\\0b"'),
     ["password_file: 'a\\x00b' is not a file path"]),
    ("auth-crc", with_lines("auth_method: crc"), ["auth_method: 'crc': crc is refused"]),
    ("auth-other", with_lines("auth_method: sha256"), ["auth_method: 'sha256' is not valid"]),
    ("deadtime-word", with_lines("deadtime: soon"), ["deadtime: 'soon' is not a duration"]),
    ("keepalive-zero", with_lines("keepalive: 0"), ["keepalive: 0 is not a duration"]),
    ("keepalive-negative", with_lines("keepalive: -1"), ["keepalive: -1 is not a duration"]),
    ("warntime-bool", with_lines("warntime: yes"), ["warntime: True is not a duration"]),
    ("deadtime-below-warntime", with_lines("warntime: 10", "deadtime: 5"),
     ["deadtime: 5s must be greater"]),
    ("warntime-below-keepalive", with_lines("keepalive: 12", "warntime: 10"),
     ["warntime: 10s must be greater than keepalive (12s)"]),
    ("initdead-short", with_lines("deadtime: 30", "initdead: 40"),
     ["initdead: 40s must be at least twice"]),
    ("udpport-big", with_lines("udpport: 70000"), ["udpport: 70000 is not valid"]),
    ("udpport-word", with_lines("udpport: ha"), ["udpport: 'ha' is not valid"]),
    ("interface-bad", with_lines("interface: 'eth0 eth1'"), ["interface: 'eth0 eth1'"]),
    ("mode-bad", with_lines("mode: serial"), ["mode: 'serial' is not valid"]),
    ("mcast-group-unicast", with_lines("mode: mcast", "mcast_group: 10.1.1.1"),
     ["mcast_group: '10.1.1.1' is not a multicast group"]),
    ("mcast-ttl", with_lines("mode: mcast", "mcast_ttl: 256"), ["mcast_ttl: 256 is not valid"]),
    ("mcast-key-in-ucast", with_lines("mcast_group: 225.0.0.1"),
     ["mcast_group: only used with mode: mcast"]),
    ("auto-failback-bad", with_lines("auto_failback: maybe"),
     ["auto_failback: 'maybe' is not valid"]),
    ("ping-bad", with_lines("ping: router"), ["ping: 'router' is not an IP address"]),
    ("ping-list-item", with_lines("ping: [10.0.0.254, 300.1.1.1]"), ["ping[1]: '300.1.1.1'"]),
    ("ping-node-ip", with_lines("ping: 10.0.0.2"), ["ping: '10.0.0.2' is the address of node"]),
    ("ping-group-list", with_lines("ping_group: [10.0.0.254]"), ["ping_group: [", "is a list"]),
    ("logfacility-bad", with_lines("logfacility: local9"), ["logfacility: 'local9' is not valid"]),
    ("logfile-relative", with_lines("logfile: ha.log"), ["logfile: 'ha.log' is not valid"]),
    ("unknown-key", with_lines("deadtme: 10"), ["deadtme: unknown key", "did you mean 'deadtime'"]),
    ("firewall-bad", with_lines("firewall: open"), ["firewall: 'open' is a string"]),
    ("firewall-port", with_lines("firewall: {ports: [80, 99999]}"), ["firewall.ports[1]: 99999"]),
    ("heartbeat-not-mapping", "heartbeat: [1, 2]\n", ["heartbeat: [1, 2] is a list"]),
    ("nested-prefix", "heartbeat:\n" + textwrap.indent(replace("10.0.0.2", "1.2.3"), "  "),
     ["heartbeat.nodes.haproxy2: '1.2.3'"]),
    ("symbol-prefix", ":heartbeat:\n" + textwrap.indent(
        replace("haproxy2: 10.0.0.2", ":haproxy2: nope"), "  "),
     ["heartbeat.nodes.haproxy2: 'nope'"]),
    ("symbol-and-plain", with_lines(":password: again"), ["password: given twice"]),
    ("top-level-list", "- 1\n- 2\n", ["the top level is a list"]),
    ("top-level-scalar", "just text\n", ["the top level is a string"]),
    ("empty-file", "", ["is empty"]),
    ("broken-yaml", "nodes: {a: 1\n", ["invalid YAML"]),
    ("tab-indent", "nodes:\n\thaproxy1: 10.0.0.1\n", ["invalid YAML"]),
    ("python-tag", "!!python/object/apply:os.system ['true']\n", ["invalid YAML"]),
    ("spare-also-node", with_lines("spares:", "  haproxy2: 10.0.0.9"),
     ["spares.haproxy2: is also in nodes"]),
    ("spare-node-ip", with_lines("spares:", "  haproxy3: 10.0.0.2"),
     ["spares.haproxy3: '10.0.0.2' is also the address of node haproxy2"]),
    ("spare-floating-ip", with_lines("spares:", "  haproxy3: 10.0.0.100"),
     ["spares.haproxy3: '10.0.0.100' is a floating IP"]),
    ("spare-bad-ip", with_lines("spares:", "  haproxy3: 10.0.0.300"),
     ["spares.haproxy3: '10.0.0.300'"]),
    ("spares-list", with_lines("spares: [10.0.0.3]"), ["spares: ", "is a list"]),
    ("spares-mcast", with_lines("mode: mcast", "spares:", "  haproxy3: 10.0.0.3"),
     ["spares: spares need mode ucast (the cluster file says mcast)"]),
    ("group-on-spare", with_lines("spares:", "  haproxy3: 10.0.0.3",
                                  base=replace("  haproxy1: 10.0.0.100", "  haproxy3: 10.0.0.100")),
     ["resources.haproxy3: preferred node 'haproxy3' is a spare, not a member"]),
]


def run_check(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "cluster.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        program.run(["hbdeploy", "check", "--cluster", str(path)])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_config_exits_2_naming_the_key(tmp_path, capsys, text, expected) -> None:
    code, out, err = run_check(tmp_path, text, capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    assert all(line.startswith("config error: ") for line in err.strip().splitlines()), err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_every_problem_listed_at_once(tmp_path, capsys) -> None:
    text = with_lines("deadtme: 10", "udpport: 0", "mode: serial",
                      base=replace("10.0.0.2", "1.2.3.999").replace("sekret", "'a b'"))
    code, _, err = run_check(tmp_path, text, capsys)
    assert code == 2
    for path in ("deadtme:", "udpport:", "mode:", "nodes.haproxy2:", "password:"):
        assert f"config error: {path}" in err
    assert len(err.strip().splitlines()) == 5


def test_binary_junk_and_missing_file(tmp_path, capsys) -> None:
    code, _, err = run_check(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\xff", capsys)
    assert code == 2 and "not UTF-8 text" in err
    with pytest.raises(SystemExit) as exc:
        program.run(["hbdeploy", "check", "--cluster", str(tmp_path / "nope.yml")])
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_password_value_never_in_messages(tmp_path, capsys) -> None:
    for bad in ("'has space zqxsecret'", "'zqxtab\there'", "[zqxlist]"):
        _, out, err = run_check(tmp_path, replace("sekret", bad), capsys)
        assert "password: value hidden" in err
        assert "zqx" not in out + err
