"""Turn raw heartbeat settings into a :class:`~hbdeploy.model.Cluster`, or list every problem.

Each check appends a :class:`~hbdeploy.errors.Problem` naming the key path, the bad
value and what would be valid; nothing stops at the first problem.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem, key_path, key_text
from .model import Cluster, Duration, Firewall, Media, Node, ResourceGroup, Timings, fill_timings
from .secret import Secret
from .source import Source, short, type_name

ENV_PASSWORD = "HBDEPLOY_PASSWORD"

KNOWN_KEYS = (
    "nodes", "resources", "password", "password_file", "auth_method", "auth_index",
    "keepalive", "deadtime", "warntime", "initdead",
    "interface", "udpport", "mode", "mcast_group", "mcast_ttl", "mcast_loop",
    "auto_failback", "ping", "ping_group", "logfacility", "logfile", "debugfile",
    "firewall", "allow_weak_password", "install", "nonlocal_bind", "spares",
)
NODE_KEYS = ("ip", "interface", "install")
FIREWALL_KEYS = ("enabled", "ports")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
IFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")
RESOURCE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*(::[A-Za-z0-9_.,:/=@%+-]+)*")
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)?")
PORT_RE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp))?")
FACILITIES = (
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog",
    "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7", "none",
)
AUTH_METHODS = ("sha1", "md5")
MODES = ("ucast", "mcast", "bcast")
FAILBACK = {True: "on", False: "off", "on": "on", "off": "off", "legacy": "legacy",
            "yes": "on", "no": "off", "true": "on", "false": "off"}


def load(source: Source, environ: Mapping[str, str] | None = None) -> Cluster:
    """Validate ``source``; raise ConfigError listing every problem."""
    return Validator(source, os.environ if environ is None else environ).run()


fmt_path = key_path


class Validator:
    """Collects problems while reading each key; one instance per validation."""

    def __init__(self, source: Source, environ: Mapping[str, str]) -> None:
        self.source = source
        self.raw = source.settings
        self.environ = environ
        self.problems: list[Problem] = []
        self.prefix = source.section

    # -- helpers ---------------------------------------------------------------
    def path(self, *parts: object) -> str:
        return fmt_path(self.prefix, *parts)

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def ipv4(self, value: Any, path: str, what: str = "an IP address") -> str | None:
        if isinstance(value, str):
            try:
                return str(ipaddress.IPv4Address(value.strip()))
            except ValueError:
                pass
        self.bad(path, f"{short(value)} is not {what} (expected IPv4 such as 10.0.0.5)")
        return None

    def duration(self, key: str) -> Duration | None:
        value = self.raw[key]
        ms: float | None = None
        if isinstance(value, bool):
            ms = None
        elif isinstance(value, int | float):
            ms = float(value) * 1000
        elif isinstance(value, str):
            match = DURATION_RE.fullmatch(value.strip())
            if match:
                number = float(match.group(1))
                ms = number if match.group(2) == "ms" else number * 1000
        if ms is None or ms != ms or ms <= 0 or ms > 86_400_000 or ms != int(ms):
            self.bad(self.path(key), (
                f"{short(value)} is not a duration; expected a positive number of seconds "
                "(e.g. 2) or milliseconds with 'ms' (e.g. 500ms), at most one day"))
            return None
        return Duration(int(ms))

    # -- sections -------------------------------------------------------------------
    def run(self) -> Cluster:
        self.unknown_keys(self.raw, KNOWN_KEYS, self.path())
        interface = self.interface(self.raw.get("interface", "eth0"), self.path("interface"))
        install = self.flag(self.raw, "install", self.path("install"), True)
        nodes = self.nodes(interface or "eth0", install)
        spares = self.spares(interface or "eth0", install, nodes)
        groups = self.resources()
        password = self.password()
        auth_method = self.choice("auth_method", AUTH_METHODS, "sha1", {
            "crc": "crc is refused: it authenticates nothing; use sha1 (default) or md5"})
        auth_index = self.integer("auth_index", 1, 1, 15)
        timings = self.timings()
        media = self.media()
        udpport = self.integer("udpport", 694, 1, 65535)
        auto_failback = self.auto_failback()
        ping = self.ping()
        ping_groups = self.ping_groups()
        logfacility = self.choice("logfacility", FACILITIES, "local0")
        logfile = self.abs_path("logfile")
        debugfile = self.abs_path("debugfile")
        firewall = self.firewall()
        nonlocal_bind = self.flag(self.raw, "nonlocal_bind", self.path("nonlocal_bind"), False)
        allow_weak = self.raw.get("allow_weak_password", False)
        if not isinstance(allow_weak, bool):
            self.bad(self.path("allow_weak_password"), f"{short(allow_weak)} is not valid; "
                                                       "expected true or false")
        self.cross_checks(nodes, groups, ping, ping_groups, media)
        self.spare_checks(spares, groups, ping, media)
        if self.problems:
            raise ConfigError(self.problems)
        assert password is not None and timings is not None  # guaranteed by no problems
        return Cluster(
            nodes=tuple(nodes), groups=tuple(groups), password=password,
            auth_method=auth_method or "sha1", auth_index=auth_index or 1, timings=timings,
            media=media or Media(),
            udpport=udpport or 694, auto_failback=auto_failback or "on", ping=tuple(ping),
            ping_groups=tuple(ping_groups), logfacility=logfacility or "local0",
            logfile=logfile, debugfile=debugfile, firewall=firewall or Firewall(),
            allow_weak_password=allow_weak is True, nonlocal_bind=nonlocal_bind,
            spares=tuple(spares), source=self.source.path,
        )

    def unknown_keys(self, mapping: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
        for key in mapping:
            if key in known:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            self.bad(fmt_path(path, key) if path else key_text(key), (
                f"unknown key {short(key)}{did_you_mean} (valid keys: {', '.join(known)})"))

    def interface(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and IFACE_RE.fullmatch(value):
            return value
        self.bad(path, (f"{short(value)} is not a network interface name (letters, digits, "
                        "'.', '_', '-', ':', '@'; at most 15 characters, e.g. eth0)"))
        return None

    def flag(self, mapping: Mapping[Any, Any], key: str, path: str, default: bool) -> bool:
        value = mapping.get(key, default)
        if isinstance(value, bool):
            return value
        self.bad(path, f"{short(value)} is not valid; expected true or false")
        return default

    def nodes(self, default_iface: str, default_install: bool = True) -> list[Node]:
        raw = self.raw.get("nodes")
        path = self.path("nodes")
        if raw is None:
            self.bad(path, "missing; expected a mapping of node name (as `uname -n` prints it) "
                           "to its IP address, with two or more nodes")
            return []
        nodes = self.node_map(raw, path, default_iface, default_install)
        if isinstance(raw, dict) and len(raw) < 2:
            self.bad(path, f"{len(raw)} node(s) given; heartbeat needs two or more")
        return nodes

    def spares(self, default_iface: str, default_install: bool, nodes: list[Node]
               ) -> list[Node]:
        """Hot spares: prepared like nodes, but not members (docs/operations.md)."""
        raw = self.raw.get("spares")
        if raw is None:
            return []
        path = self.path("spares")
        spares = self.node_map(raw, path, default_iface, default_install)
        members = {n.name: n for n in nodes}
        member_ips = {n.ip: n.name for n in nodes}
        for spare in spares:
            spath = fmt_path(path, spare.name)
            if spare.name in members:
                self.bad(spath, "is also in nodes; a node is either a member (nodes) or a "
                                "spare (spares), not both")
            elif spare.ip in member_ips:
                self.bad(spath, f"{spare.ip!r} is also the address of node "
                                f"{member_ips[spare.ip]}; each spare needs its own address")
        return spares

    def node_map(self, raw: Any, path: str, default_iface: str, default_install: bool
                 ) -> list[Node]:
        """A mapping of node name to its address (or to ip/interface/install)."""
        if not isinstance(raw, dict):
            self.bad(path, (f"{short(raw)} is a {type_name(raw)}; expected a mapping of node "
                            "name to IP address, e.g. {haproxy1: 10.0.0.1, haproxy2: 10.0.0.2}"))
            return []
        nodes: list[Node] = []
        for name, spec in raw.items():
            npath = fmt_path(path, name)
            name_ok = self.node_name(name, npath)
            iface: str | None = default_iface
            install = default_install
            if isinstance(spec, dict):
                install = self.flag(spec, "install", fmt_path(npath, "install"), install)
                self.unknown_keys(spec, NODE_KEYS, npath)
                if "ip" not in spec:
                    self.bad(fmt_path(npath, "ip"), "missing; the node's IP address is required")
                    ip = None
                else:
                    ip = self.ipv4(spec["ip"], fmt_path(npath, "ip"))
                if "interface" in spec:
                    iface = self.interface(spec["interface"], fmt_path(npath, "interface"))
            else:
                ip = self.ipv4(spec, npath)
            if name_ok and ip and iface:
                nodes.append(Node(str(name), ip, iface, install))
        seen: dict[str, str] = {}
        for node in nodes:
            if node.ip in seen:
                self.bad(fmt_path(path, node.name), (
                    f"{node.ip!r} is also the address of {seen[node.ip]}; each node needs "
                    "its own address"))
            seen.setdefault(node.ip, node.name)
        return nodes

    def node_name(self, name: Any, path: str) -> bool:
        if isinstance(name, str) and NAME_RE.fullmatch(name):
            return True
        self.bad(path, (f"{short(name)} is not a valid node name; it must be what `uname -n` "
                        "prints: letters, digits, '.', '-', '_' (at most 64, no spaces)"))
        return False

    def resources(self) -> list[ResourceGroup]:
        raw = self.raw.get("resources")
        path = self.path("resources")
        if raw is None:
            self.bad(path, "missing; expected a mapping of preferred node to its resources, "
                           "e.g. {haproxy1: 10.0.0.100}")
            return []
        if not isinstance(raw, dict) or not raw:
            self.bad(path, (f"{short(raw)} is a {type_name(raw)}; expected a non-empty mapping "
                            "of preferred node to one resource or a list of resources"))
            return []
        raw_nodes = self.raw.get("nodes")
        names = [str(n) for n in raw_nodes] if isinstance(raw_nodes, dict) else []
        groups: list[ResourceGroup] = []
        for node, items in raw.items():
            gpath = fmt_path(path, node)
            ok = self.node_name(node, gpath)
            if ok and names and node not in names:
                spares = self.raw.get("spares")
                spare = isinstance(spares, dict) and node in spares
                self.bad(gpath, (f"preferred node {node!r} is "
                                 + ("a spare, not a member: " if spare else "not ")
                                 + f"one of nodes ({', '.join(names)})"))
                ok = False
            values = items if isinstance(items, list) else [items]
            if not values:
                self.bad(gpath, "an empty list; give at least one resource")
                ok = False
            parsed = []
            for i, item in enumerate(values):
                rpath = f"{gpath}[{i}]" if isinstance(items, list) else gpath
                resource = self.resource(item, rpath)
                if resource:
                    parsed.append(resource)
            if ok and len(parsed) == len(values):
                groups.append(ResourceGroup(str(node), tuple(parsed)))
        return groups

    def resource(self, value: Any, path: str) -> str | None:
        valid = ("expected an IPv4 address, IPaddr::IP[/cidr[/iface]], IPaddr2::IP[/cidr[/iface]] "
                 "or a service name (init script or resource.d script, args after '::')")
        if not isinstance(value, str) or not value.strip():
            self.bad(path, f"{short(value)} is a {type_name(value)}; {valid}")
            return None
        value = value.strip()
        try:
            return f"IPaddr::{ipaddress.IPv4Address(value)}"
        except ValueError:
            pass
        if re.fullmatch(r"[\d.]+", value):
            self.bad(path, f"{short(value)} is not an IP address; {valid}")
            return None
        if not RESOURCE_RE.fullmatch(value):
            self.bad(path, f"{short(value)} is not a resource; {valid}")
            return None
        agent, _, args = value.partition("::")
        if agent in ("IPaddr", "IPaddr2"):
            parts = args.split("::")[0].split("/")
            if not args or self.ipv4(parts[0], path, f"a valid {agent} address") is None:
                return None
            if len(parts) > 1 and not (parts[1].isdigit() and 1 <= int(parts[1]) <= 32):
                self.bad(path, f"{short(value)}: netmask {parts[1]!r} must be 1-32 bits")
                return None
            if len(parts) > 2 and not IFACE_RE.fullmatch(parts[2]):
                self.bad(path, f"{short(value)}: {parts[2]!r} is not an interface name")
                return None
            if len(parts) > 4:
                self.bad(path, f"{short(value)}: expected {agent}::IP[/cidr[/iface[/broadcast]]]")
                return None
        return value

    def password(self) -> Secret | None:
        has_inline = "password" in self.raw
        has_file = "password_file" in self.raw
        what = ("a single word of printable characters, no spaces (at most 256), "
                "given as password, password_file or $" + ENV_PASSWORD)
        if has_inline and has_file:
            self.bad(self.path("password_file"), "password and password_file are both given; "
                                                 "keep one")
            return None
        if has_inline:
            value, where = self.raw["password"], self.path("password")
            if not isinstance(value, str):
                self.bad(where, f"value hidden: a {type_name(value)}, expected a string "
                                "(quote it in YAML)")
                return None
        elif has_file:
            where = self.path("password_file")
            file_value = self.raw["password_file"]
            if not isinstance(file_value, str) or not file_value or "\0" in file_value:
                self.bad(where, f"{short(file_value)} is not a file path")
                return None
            pfile = Path(file_value).expanduser()
            if not pfile.is_absolute() and self.source.path is not None:
                pfile = self.source.path.parent / pfile
            try:
                mode = pfile.stat().st_mode & 0o777
                if mode & 0o077:
                    self.bad(where, (
                        f"{str(pfile)!r} is open to group or others (mode {mode:04o}); the "
                        f"password must be readable by its owner only: chmod 600 "
                        f"{shlex.quote(str(pfile))}"))
                    return None
                value = pfile.read_text(encoding="utf-8").strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                self.bad(where, f"{str(pfile)!r} cannot be read: {reason}")
                return None
        elif self.environ.get(ENV_PASSWORD):
            value, where = self.environ[ENV_PASSWORD], f"${ENV_PASSWORD}"
        else:
            self.bad(self.path("password"), (
                f"missing; set password, password_file or ${ENV_PASSWORD} "
                "(there is no default password)"))
            return None
        if not value or len(value) > 256 or any(c.isspace() or not c.isprintable() for c in value):
            self.bad(where, f"value hidden: not valid; expected {what}")
            return None
        return Secret(value)

    def choice(self, key: str, valid: tuple[str, ...], default: str,
               refused: Mapping[str, str] | None = None) -> str | None:
        value = self.raw.get(key, default)
        if isinstance(value, str) and value.lower() in valid:
            return value.lower()
        if refused and isinstance(value, str) and value.lower() in refused:
            self.bad(self.path(key), f"{short(value)}: {refused[value.lower()]}")
            return None
        self.bad(self.path(key), f"{short(value)} is not valid; expected one of {', '.join(valid)}")
        return None

    def integer(self, key: str, default: int, low: int, high: int) -> int | None:
        value = self.raw.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.bad(self.path(key), f"{short(value)} is not valid; expected an integer {low}-{high}")
        return None

    def timings(self) -> Timings | None:
        given = {key: self.duration(key) for key in ("keepalive", "warntime", "deadtime",
                                                     "initdead") if key in self.raw}
        if any(v is None for v in given.values()):
            return None
        timings = fill_timings(given)  # type: ignore[arg-type]
        k, w, d, i = timings.keepalive, timings.warntime, timings.deadtime, timings.initdead
        if not k.ms < w.ms:
            self.bad(self.path("warntime"), (
                f"{w} must be greater than keepalive ({k}); heartbeat needs keepalive < warntime "
                "< deadtime"))
        if not w.ms < d.ms:
            self.bad(self.path("deadtime"), (
                f"{d} must be greater than warntime ({w}); heartbeat needs keepalive < warntime "
                "< deadtime (set warntime too when you lower deadtime)"))
        if not i.ms >= 2 * d.ms:
            self.bad(self.path("initdead"), (
                f"{i} must be at least twice deadtime ({d}), i.e. at least "
                f"{Duration(2 * d.ms)}: nodes booting together need time to see each other"))
        return timings

    def media(self) -> Media | None:
        mode = self.choice("mode", MODES, "ucast")
        if mode is None:
            return None
        mcast_keys = [k for k in ("mcast_group", "mcast_ttl", "mcast_loop") if k in self.raw]
        if mode != "mcast":
            for key in mcast_keys:
                self.bad(self.path(key), f"only used with mode: mcast (mode is {mode})")
            return Media(mode=mode)
        group = self.raw.get("mcast_group", Media.mcast_group)
        group_ok = None
        try:
            if isinstance(group, str) and ipaddress.IPv4Address(group) in ipaddress.IPv4Network(
                    "224.0.0.0/4"):
                group_ok = group
        except ValueError:
            pass
        if group_ok is None:
            self.bad(self.path("mcast_group"), (
                f"{short(group)} is not a multicast group; expected an IPv4 address in "
                "224.0.0.0/4 (e.g. 225.0.0.1)"))
        ttl = self.integer("mcast_ttl", Media.mcast_ttl, 1, 255)
        loop = self.integer("mcast_loop", Media.mcast_loop, 0, 1)
        if group_ok is None or ttl is None or loop is None:
            return None
        return Media(mode="mcast", mcast_group=group_ok, mcast_ttl=ttl, mcast_loop=loop)

    def auto_failback(self) -> str | None:
        value = self.raw.get("auto_failback", "on")
        key = value.lower() if isinstance(value, str) else value
        if isinstance(key, bool | str) and key in FAILBACK:
            return FAILBACK[key]
        self.bad(self.path("auto_failback"), (
            f"{short(value)} is not valid; expected on, off or legacy (or yes/no, true/false)"))
        return None

    def ip_list(self, value: Any, path: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            self.bad(path, "an empty list; give one or more IPv4 addresses")
        ips = []
        for i, item in enumerate(items):
            ip = self.ipv4(item, f"{path}[{i}]" if isinstance(value, list) else path)
            if ip:
                ips.append(ip)
        return ips

    def ping(self) -> list[str]:
        if "ping" not in self.raw:
            return []
        return self.ip_list(self.raw["ping"], self.path("ping"))

    def ping_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        if "ping_group" not in self.raw:
            return []
        raw, path = self.raw["ping_group"], self.path("ping_group")
        if not isinstance(raw, dict) or not raw:
            self.bad(path, (f"{short(raw)} is a {type_name(raw)}; expected a mapping of group "
                            "name to a list of IPv4 addresses, e.g. {routers: [10.0.0.1, "
                            "10.0.0.254]}"))
            return []
        groups = []
        for name, value in raw.items():
            if self.node_name(name, fmt_path(path, name)):
                groups.append((str(name), tuple(self.ip_list(value, fmt_path(path, name)))))
        return groups

    def abs_path(self, key: str) -> str | None:
        if key not in self.raw:
            return None
        value = self.raw[key]
        if isinstance(value, str) and value.startswith("/") and not any(
                c.isspace() or not c.isprintable() for c in value) and len(value) < 4096:
            return value
        self.bad(self.path(key), f"{short(value)} is not valid; expected an absolute path "
                                 "without spaces, e.g. /var/log/ha-log")
        return None

    def firewall(self) -> Firewall | None:
        raw, path = self.raw.get("firewall", True), self.path("firewall")
        if isinstance(raw, bool):
            return Firewall(enabled=raw)
        if not isinstance(raw, dict):
            self.bad(path, (f"{short(raw)} is a {type_name(raw)}; expected true, false or a "
                            "mapping {enabled: true, ports: [80, 443/tcp]}"))
            return None
        self.unknown_keys(raw, FIREWALL_KEYS, path)
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.bad(fmt_path(path, "enabled"), f"{short(enabled)} is not true or false")
            enabled = True
        ports_raw = raw.get("ports", [])
        if not isinstance(ports_raw, list):
            ports_raw = [ports_raw]
        ports = []
        for i, port in enumerate(ports_raw):
            spec = self.port(port, f"{fmt_path(path, 'ports')}[{i}]")
            if spec:
                ports.append(spec)
        return Firewall(enabled=bool(enabled), ports=tuple(ports))

    def port(self, value: Any, path: str) -> str | None:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        match = PORT_RE.fullmatch(text) if isinstance(text, str) else None
        if match:
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if 1 <= low <= high <= 65535:
                rng = f"{low}-{high}" if high != low else str(low)
                return f"{rng}/{match.group(3) or 'tcp'}"
        self.bad(path, (f"{short(value)} is not a port; expected 1-65535, a range such as "
                        "8000-8080, optionally with /tcp or /udp"))
        return None

    def cross_checks(self, nodes: list[Node], groups: list[ResourceGroup], ping: list[str],
                     ping_groups: list[tuple[str, tuple[str, ...]]], media: Media | None) -> None:
        node_ips = {n.ip: n.name for n in nodes}
        seen: dict[str, str] = {}
        for group in groups:
            for ip in group.floating_ips():
                gpath = self.path("resources", group.node)
                if ip in node_ips:
                    self.bad(gpath, (f"floating IP {ip!r} is the address of node "
                                     f"{node_ips[ip]}; a floating IP must be an address of "
                                     "its own"))
                if ip in seen:
                    self.bad(gpath, f"floating IP {ip!r} is already in the group of {seen[ip]}")
                seen.setdefault(ip, group.node)
        for ip in ping + [ip for _, ips in ping_groups for ip in ips]:
            if ip in node_ips:
                self.bad(self.path("ping"), (f"{ip!r} is the address of node {node_ips[ip]}; "
                                             "ping nodes are outside devices such as routers"))

    def spare_checks(self, spares: list[Node], groups: list[ResourceGroup], ping: list[str],
                     media: Media | None) -> None:
        if not spares:
            return
        path = self.path("spares")
        for group in groups:
            for ip in group.floating_ips():
                for spare in spares:
                    if ip == spare.ip:
                        self.bad(fmt_path(path, spare.name), (
                            f"{ip!r} is a floating IP (resources.{group.node}); a spare "
                            "needs an address of its own"))
        for ip in ping:
            for spare in spares:
                if ip == spare.ip:
                    self.bad(self.path("ping"), (f"{ip!r} is the address of spare "
                                                 f"{spare.name}; ping nodes are outside "
                                                 "devices such as routers"))
        if media is not None and media.mode != "ucast":
            self.bad(path, (f"spares need mode ucast (the cluster file says {media.mode}): "
                            "a member replaced by a spare is kept out, when it comes back, "
                            "by no longer receiving its peers' heartbeats, which mcast and "
                            "bcast deliver to every node; use mode: ucast, or no spares"))
