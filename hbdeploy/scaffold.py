"""Write an ops folder's hbdeploy files: a commented cluster file, its password file and a
one-line ``fabfile.py`` (``hbdeploy init``; ``hbdeploy import`` writes its cluster file with
:func:`cluster_text` too).

Everything is checked before anything is written, and nothing is overwritten without
``force``; a password file that exists is kept (never overwritten, never printed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import secret, source, validate
from .errors import ConfigError, Problem
from .files import write_atomic
from .model import Cluster

CLUSTER_FILE = Path("config/heartbeat.yml")
PASSWORD_FILE = Path("config/heartbeat.key")
FABFILE = Path("fabfile.py")
MOONSHINE = Path("config/moonshine.yml")

FABFILE_TEXT = '''"""hbdeploy's tasks for `fab` (`fab --list`): written by `hbdeploy init`."""
from hbdeploy.fabfile import ns  # noqa: F401
'''

# One line above each key of a written cluster file (docs/configuration.md has the rest).
COMMENTS = {
    "nodes": "Every node, named as `uname -n` prints it, and the address heartbeat uses.",
    "resources": "Each group's preferred node, then its resources in start order (a bare IP "
                 "is IPaddr::IP).",
    "password_file": "heartbeat's shared key (authkeys), in a 0600 file beside this one.",
    "auth_method": "How heartbeat signs its packets: sha1 (default) or md5.",
    "auth_index": "The key's number in authkeys (auth N); 1 unless a cluster used another.",
    "interface": "The interface heartbeat talks on (and where the floating IPs go).",
    "keepalive": "Seconds between two heartbeats.",
    "warntime": "Seconds of silence before heartbeat warns of a late heartbeat.",
    "deadtime": "Seconds of silence before a peer is declared dead (the failover time).",
    "initdead": "deadtime at boot, while the network comes up.",
    "udpport": "heartbeat's UDP port.",
    "mode": "How heartbeat packets travel: ucast (default, one line per peer) or mcast.",
    "mcast_group": "The multicast group (mode: mcast).",
    "mcast_ttl": "Multicast TTL (mode: mcast).",
    "mcast_loop": "Multicast loopback (mode: mcast).",
    "auto_failback": "on: a group goes back to its preferred node when that node returns.",
    "ping": "Outside addresses (a router): ipfail and hbdeploy-guard use them to tell which "
            "node is cut off.",
    "ping_group": "Groups of outside addresses, any one answering counts.",
    "logfacility": "The syslog facility heartbeat logs to.",
    "logfile": "A file heartbeat logs to as well.",
    "debugfile": "heartbeat's debug log file.",
    "firewall": "Open heartbeat's port to the peers and the floating IPs to clients "
                "(true, false or {enabled, ports}).",
    "install": "false where the operator provides heartbeat (pre-flight checks it is there).",
    "allow_weak_password": "Deploy a password shorter than 16 characters anyway.",
}
# Shown commented out under the keys a file sets, so the next choices are in sight.
DEFAULTS = {"keepalive": 1, "warntime": 3, "deadtime": 5, "initdead": 60,
            "auto_failback": "on", "udpport": 694, "logfacility": "local0"}


@dataclass
class Plan:
    """What ``init`` writes, checked: the cluster file's text, whether the password file is
    new (and the password it gets), and the notes to print."""

    folder: Path
    cluster_text: str
    password: str | None  # None: the password file exists and is kept
    notes: list[str] = field(default_factory=list)


def cluster_text(settings: Mapping[str, Any], header: str) -> str:
    """A cluster file holding ``settings`` (hbdeploy's key names), one comment per key, and
    the usual timings commented out where the settings leave them out."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    order = list(COMMENTS)
    ordered = sorted(settings.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                     else len(order))
    for key, value in ordered:
        if key == "auto_failback" and isinstance(value, bool):
            value = "on" if value else "off"  # YAML's yes/no read as booleans
        lines += ["", f"# {COMMENTS[key]}" if key in COMMENTS else f"# {key}"]
        lines.append(yaml.safe_dump({key: value}, default_flow_style=False,
                                    sort_keys=False).rstrip())
    unset = [key for key in DEFAULTS if key not in settings]
    if unset:
        lines += ["", "# Defaults, for reference (docs/configuration.md):"]
        lines += [f"# {key}: {DEFAULTS[key]}" for key in unset]
    return "\n".join(lines) + "\n"


def from_flags(nodes: list[str], floating_ip: str, interface: str | None = None,
               ping: str | None = None, services: list[str] | None = None) -> dict[str, Any]:
    """Settings from ``init``'s flags; ConfigError naming every bad flag."""
    problems, parsed = [], {}
    for spec in nodes:
        name, sep, ip = spec.partition("=")
        if not sep or not name or not ip:
            problems.append(Problem("--node", f"{spec!r} is not NAME=IP (e.g. "
                                              "haproxy1=10.0.0.11)"))
        else:
            parsed[name] = ip
    if len(nodes) < 2:
        problems.append(Problem("--node", f"{len(nodes)} given; give every node (two or "
                                          "more): --node haproxy1=10.0.0.11 --node ..."))
    if not floating_ip:
        problems.append(Problem("--floating-ip", "missing; the address clients use, which "
                                                 "heartbeat moves (e.g. 10.0.0.100/24)"))
    if problems:
        raise ConfigError(problems)
    ip = floating_ip.split("/")[0]
    resource = f"IPaddr::{floating_ip}" if "/" in floating_ip else ip
    settings: dict[str, Any] = {"nodes": parsed,
                                "resources": {next(iter(parsed)): [resource, *(services or [])]}}
    settings["password_file"] = PASSWORD_FILE.name
    if interface:
        settings["interface"] = interface
    if ping:
        settings["ping"] = ping
    return settings


def from_moonshine(folder: Path) -> tuple[dict[str, Any], str | None, list[str]]:
    """The settings of ``config/moonshine.yml`` under hbdeploy's keys, its password (None
    when it has none) and notes; ConfigError when it is not valid."""
    src = source.read(folder / MOONSHINE)
    settings = dict(src.settings)
    notes = [f"read {MOONSHINE} (its heartbeat settings, as hbdeploy reads them)"]
    password = settings.pop("password", None)
    settings.pop("password_file", None)
    if password is None:
        notes.append("it has no password (moonshine_heartbeat fell back to a well-known "
                     "one): a new random password is written, and the first deploy puts it "
                     "on every node")
    elif secret.weakness(secret.Secret(str(password))):
        notes.append(f"its password is weak ({secret.weakness(secret.Secret(str(password)))})"
                     f": deploy refuses it until {PASSWORD_FILE} holds a strong one (hbdeploy "
                     "password.generate; the deploy then rotates it on every node) or the "
                     "cluster file says allow_weak_password: true")
    return {**settings, "password_file": PASSWORD_FILE.name}, (
        None if password is None else str(password)), notes


def plan(folder: Path, settings: Mapping[str, Any], password: str | None,
         force: bool = False, notes: list[str] | None = None, header: str = "") -> Plan:
    """Check everything ``write`` would do; ConfigError listing every problem."""
    problems = []
    if not force:
        taken = [str(p) for p in (CLUSTER_FILE, FABFILE) if (folder / p).exists()]
        if taken:
            problems.append(Problem("", f"{', '.join(taken)} exist(s) in {folder}; hbdeploy "
                                        "init overwrites nothing without --force"))
    key = folder / PASSWORD_FILE
    notes = list(notes or [])
    if key.exists():
        if password is not None:
            notes.append(f"{PASSWORD_FILE} exists and is kept (the password read is not "
                         "written)")
        password = None
        kept = key.read_text().strip() if key.is_file() else ""
    else:
        password = password if password is not None else secret.random_password()
        kept = password
    text = cluster_text(settings, header or "hbdeploy cluster file, written by `hbdeploy init`.")
    document = dict(yaml.safe_load(text))
    document.pop("password_file", None)
    try:
        validate.load(source.from_document({**document, "password": kept or "x"},
                                           folder / CLUSTER_FILE), environ={})
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return Plan(folder, text, password, notes)


def write(p: Plan) -> list[Path]:
    """Write what ``p`` holds: the password file first (new, 0600), then the others."""
    (p.folder / CLUSTER_FILE).parent.mkdir(parents=True, exist_ok=True)
    written = []
    if p.password is not None:
        secret.write_new(p.folder / PASSWORD_FILE, p.password)
        written.append(p.folder / PASSWORD_FILE)
    write_atomic(p.folder / CLUSTER_FILE, p.cluster_text, 0o644)
    write_atomic(p.folder / FABFILE, FABFILE_TEXT, 0o644)
    return [*written, p.folder / CLUSTER_FILE, p.folder / FABFILE]


def loaded(folder: Path) -> Cluster:
    """The cluster file just written, read as ``check`` reads it."""
    return validate.load(source.read(folder / CLUSTER_FILE), environ={})
