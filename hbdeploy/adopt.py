"""Adopt a cluster someone built by hand (``hbdeploy import -H a,b``).

Reads ``/etc/ha.d/ha.cf``, ``haresources`` and ``authkeys`` from the running nodes (one
command per host), turns them into hbdeploy settings, and reports, per host, every line the
new cluster file cannot express and every line hbdeploy would add, and where the nodes'
files differ from each other. The key goes to a 0600 password file; it is never printed.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fabric import Connection

from . import equivalence, layout
from .errors import HbdeployError
from .model import Cluster
from .remote import Remote, verify_host_keys
from .render import render_node
from .secret import Secret

FILES = ("ha.cf", "haresources", "authkeys")
PROBE = r"""
LC_ALL=C; export LC_ALL
p() { printf '%s\t%s\n' "$1" "$2"; }
p uname "$(uname -n)"
ip -o -4 addr show 2>/dev/null | while read -r _ dev _ addr _; do p addr "$dev ${addr%/*}"; done
for f in ha.cf haresources authkeys; do
  [ -f /etc/ha.d/$f ] && p "file_$f" "$(base64 -w0 < /etc/ha.d/$f)"
done
cl_status hbstatus >/dev/null 2>&1 && p running yes
true
"""
# ha.cf directives that become settings, and how.
TIMINGS = ("keepalive", "warntime", "deadtime", "initdead")
SINGLE = {"udpport": "udpport", "auto_failback": "auto_failback",
          "logfacility": "logfacility", "logfile": "logfile", "debugfile": "debugfile"}
CRM_OFF = ("off", "no", "false")


class AdoptError(HbdeployError):
    """A host could not be read, or what it holds cannot become a cluster file."""


@dataclass
class HostFiles:
    """What one host has: its name, addresses and heartbeat's files."""

    host: str
    uname: str = ""
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (interface, ip)
    files: dict[str, str] = field(default_factory=dict, repr=False)  # authkeys: the key
    running: bool = False


@dataclass
class Adoption:
    """The settings read, the password, and what the report says."""

    settings: dict[str, Any]
    password: Secret
    unexpressed: list[str] = field(default_factory=list)  # "host: file: line"
    added: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_hosts(connections: Sequence[Connection]) -> list[HostFiles]:
    """One command per host, all at once; AdoptError naming every host that failed."""
    def one(conn: Connection) -> HostFiles:
        remote = Remote(verify_host_keys(conn), conn.original_host or conn.host)
        try:
            _, out, _ = remote.run(PROBE, timeout=60, idempotent=True)
        finally:
            remote.close()
        got = HostFiles(remote.label)
        for line in out.splitlines():
            key, _, value = line.partition("\t")
            if key == "uname":
                got.uname = value
            elif key == "addr":
                dev, _, ip = value.partition(" ")
                got.addresses.append((dev, ip))
            elif key.startswith("file_"):
                got.files[key[5:]] = base64.b64decode(value).decode("utf-8", "replace")
            elif key == "running":
                got.running = True
        return got

    with ThreadPoolExecutor(max(1, len(connections))) as pool:
        futures = [pool.submit(one, c) for c in connections]
    hosts, problems = [], []
    for future in futures:
        try:
            hosts.append(future.result())
        except HbdeployError as exc:
            problems.append(str(exc))
    for h in hosts:
        missing = [f for f in FILES if f not in h.files]
        if missing:
            problems.append(f"{h.host}: no /etc/ha.d/{', /etc/ha.d/'.join(missing)}: not a "
                            "heartbeat node to import")
    if problems:
        raise AdoptError("nothing was written:\n  " + "\n  ".join(problems))
    return hosts


def _number(value: str) -> Any:
    """A timing as the cluster file writes it: 2, 1.5 or '500ms'."""
    if value.endswith("ms"):
        return value
    text = value[:-1] if value.endswith("s") else value
    try:
        number = float(text)
    except ValueError:
        return value  # validation names it
    return int(number) if number.is_integer() else number


def _directives(text: str) -> list[list[str]]:
    return [line.split(" ") for line in equivalence.lines(text)]


def adopt(hosts: list[HostFiles]) -> Adoption:
    """Settings from the first host's files (the others are compared with it)."""
    ref = hosts[0]
    settings: dict[str, Any] = {}
    unexpressed: list[str] = []
    names: list[str] = []
    media: list[list[str]] = []
    ping: list[str] = []
    ping_groups: dict[str, list[str]] = {}
    for words in _directives(ref.files["ha.cf"]):
        name, args = words[0], words[1:]
        line = " ".join(words)
        if name == "node":
            names += args
        elif name in TIMINGS and len(args) == 1:
            settings[name] = _number(args[0])
        elif name in SINGLE and len(args) == 1:
            value: Any = int(args[0]) if name == "udpport" and args[0].isdigit() else args[0]
            settings[SINGLE[name]] = value
        elif name in ("ucast", "mcast", "bcast"):
            media.append(words)
        elif name == "ping":
            ping += args
        elif name == "ping_group" and len(args) >= 2:
            ping_groups[args[0]] = args[1:]
        elif name == "respawn" and len(args) == 2 and args[1].endswith("/ipfail"):
            pass  # hbdeploy writes its own ipfail line wherever ping is set
        elif name in ("crm", "pacemaker") and args and args[0] in CRM_OFF:
            pass  # hbdeploy writes crm off
        else:
            unexpressed.append(f"{ref.host}: ha.cf: {line}")
    kinds = {m[0] for m in media}
    if len(kinds) > 1:
        unexpressed += [f"{ref.host}: ha.cf: {' '.join(m)}" for m in media
                        if m[0] != sorted(kinds)[-1]]
    mode = sorted(kinds)[-1] if kinds else "ucast"
    devices = {m[1] for m in media if len(m) > 1}
    interface = sorted(devices)[0] if devices else "eth0"
    if mode == "mcast":
        m = next(m for m in media if m[0] == "mcast")
        if len(m) == 6:
            settings.update(mode="mcast", mcast_group=m[2], mcast_ttl=int(m[4]),
                            mcast_loop=int(m[5]))
    elif mode == "bcast":
        settings["mode"] = "bcast"
    if ping:
        settings["ping"] = ping if len(ping) > 1 else ping[0]
    if ping_groups:
        settings["ping_group"] = ping_groups
    settings["nodes"] = _nodes(hosts, names, interface, media, unexpressed)
    if interface != "eth0":
        settings["interface"] = interface
    settings["resources"] = _resources(ref, unexpressed)
    password, method, index, notes = _authkeys(ref, unexpressed)
    if method != "sha1":
        settings["auth_method"] = method
    if index != "1":
        settings["auth_index"] = int(index) if index.isdigit() else index
    settings["password_file"] = "heartbeat.key"
    order = ["nodes", "resources", "password_file"]
    ordered = {k: settings[k] for k in order} | {k: v for k, v in settings.items()
                                                 if k not in order}
    return Adoption(ordered, password, unexpressed, notes=notes)


def _nodes(hosts: list[HostFiles], names: list[str], interface: str,
           media: list[list[str]], unexpressed: list[str]) -> dict[str, Any]:
    """Each node's address: the address of its host that its peers send to (ucast), else its
    address on the media interface."""
    targets = {ip for h in hosts for words in _directives(h.files["ha.cf"])
               if words[0] == "ucast" and len(words) == 3 for ip in words[2:]}
    by_name = {h.uname: h for h in hosts}
    nodes: dict[str, Any] = {}
    for name in names:
        host = by_name.get(name)
        if host is None:
            peers = sorted(targets - {ip for h in hosts for _, ip in h.addresses})
            guess = peers[0] if len(peers) == 1 else None
            if guess:
                nodes[name] = guess
            else:
                unexpressed.append(f"node {name}: not among the hosts given (-H), and its "
                                   "address cannot be read from the others' ucast lines; "
                                   "give it with -H")
            continue
        own = [(dev, ip) for dev, ip in host.addresses if dev != "lo"]
        chosen = next((ip for _, ip in own if ip in targets), None) or next(
            (ip for dev, ip in own if dev == interface), None)
        if chosen is None:
            unexpressed.append(f"node {name}: no address found on {host.host}")
            continue
        dev = next(d for d, ip in own if ip == chosen)
        nodes[name] = chosen if dev == interface else {"ip": chosen, "interface": dev}
    return nodes


def _resources(ref: HostFiles, unexpressed: list[str]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for line in equivalence.haresources_key(ref.files["haresources"]):
        node, *resources = line.split(" ")
        if node in groups or not resources:
            unexpressed.append(f"{ref.host}: haresources: {line} (one group per preferred "
                               "node, with at least one resource)")
            continue
        groups[node] = resources if len(resources) > 1 else resources[0]
    return groups


def _authkeys(ref: HostFiles, unexpressed: list[str]) -> tuple[Secret, str, str, list[str]]:
    words = _directives(ref.files["authkeys"])
    using = next((w[1] for w in words if w[0] == "auth" and len(w) == 2), "")
    keys = {w[0]: (w[1], " ".join(w[2:])) for w in words if w[0] != "auth" and len(w) >= 3}
    if using not in keys:
        raise AdoptError(f"{ref.host}: authkeys names no usable key (auth {using or '?'}); "
                           "nothing was written")
    method, key = keys[using]
    notes = []
    if len(keys) > 1:
        notes.append(f"authkeys holds {len(keys)} keys; the one in use (auth {using}) is "
                     "imported, the others are dropped by the next deploy")
    if method not in ("sha1", "md5"):
        unexpressed.append(f"{ref.host}: authkeys: method {method} (hbdeploy writes sha1 or "
                           "md5; crc authenticates nothing)")
    return Secret(key), method, using, notes


def compare(hosts: list[HostFiles], adoption: Adoption, cluster: Cluster) -> None:
    """Fill in what each host's files have that the rendered ones lack (and the other way
    round), and where hosts differ from the first."""
    ref = hosts[0]
    digest = {h.host: equivalence.authkeys_digest(h.files["authkeys"]) for h in hosts}
    for host in hosts:
        if host.uname not in cluster.node_names:
            continue
        rendered = render_node(cluster, host.uname, ipfail_path=layout.IPFAIL)
        for name, key in (("ha.cf", equivalence.lines),
                          ("haresources", equivalence.haresources_key)):
            theirs, ours = set(key(host.files[name])), set(key(rendered[name].content))
            already = {u.split(f"{name}: ", 1)[-1] for u in adoption.unexpressed
                       if u.startswith(f"{host.host}: {name}: ")}
            for line in sorted(theirs - ours - already):
                adoption.unexpressed.append(f"{host.host}: {name}: {line}")
            for line in sorted(ours - theirs):
                default = " (heartbeat's default: no change)" \
                    if line in equivalence.DEFAULT_LINES else ""
                adoption.added.append(f"{host.host}: {name}: {line}{default}")
            if host is not ref and name == "haresources" and \
                    equivalence.haresources_key(host.files[name]) != \
                    equivalence.haresources_key(ref.files[name]):
                adoption.differences.append(f"{host.host}: haresources differs from "
                                            f"{ref.host}'s")
        if host is not ref:
            own = {f"ucast {d} {ip}" for h in hosts for d, ip in h.addresses}
            a = {ln for ln in equivalence.lines(host.files["ha.cf"]) if ln not in own}
            b = {ln for ln in equivalence.lines(ref.files["ha.cf"]) if ln not in own}
            for line in sorted(a ^ b):
                side = host.host if line in a else ref.host
                adoption.differences.append(f"ha.cf: only {side} has: {line}")
            if digest[host.host] != digest[ref.host]:
                adoption.differences.append(f"{host.host}: authkeys differs from "
                                            f"{ref.host}'s (the key itself is not shown)")
    for host in hosts:
        if not host.running:
            adoption.notes.append(f"{host.host}: heartbeat is not running")


def describe(adoption: Adoption) -> list[str]:
    """The report's lines (no key in them)."""
    out = []
    for title, items in (("cannot express (a deploy would drop these lines)",
                          adoption.unexpressed),
                         ("hbdeploy adds", adoption.added),
                         ("the nodes differ", adoption.differences)):
        if items:
            out.append(f"{title}:")
            out += [f"  {item}" for item in items]
    out += [f"note: {note}" for note in adoption.notes]
    return out
