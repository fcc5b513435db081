"""Facts: what a host has, gathered by ONE remote command per host.

The same command reports the node's heartbeat view (status.py) and, for a deploy, what
the end of a deploy would otherwise need more round trips for: the node announces the
floating IPs it holds (gratuitous ARP, in the background) and pings the ones it does not.
With nothing to change and a healthy cluster, a deploy is then done in one command per
host. Without ``announce`` (``--check``) it changes nothing.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import announce as announce_script
from . import firewall, layout, lock, rekey, status, supervision, sysctl
from .model import Cluster
from .remote import Remote
from .render import FILES

MANAGED_DIR = "/etc/ha.d"

# POSIX sh; every section prints "key<TAB>value" lines. It only reads. About 20 programs
# run and as many forks of the shell (88 processes once: one sha256sum and one stat for
# every file it tracks; builtins wherever a process did nothing more); each process costs
# 1-2.5 ms of a lab node's CPU, and a whole probe on a node of a 4-node cluster 70-80 ms
# (docs/performance.md). HEAD runs before the probe's two branches (probe() below),
# which both use the node's name.
HEAD = r"""LC_ALL=C; export LC_ALL
p() { printf '%s\t%s\n' "$1" "$2"; }
node=; read -r node 2>/dev/null </proc/sys/kernel/hostname || node=$(uname -n)
"""
# What both branches of a cluster's probe read, read once before they start: the node's
# addresses (one process rather than two; CPU is what a many-node run on few cores waits
# for). The clock is read only where it is used: beside a run lock (lock.PROBE) and by the
# standby-wedge check (status.py), each with its own `date`.
SHARED = r"""addrs=$(ip -o -4 addr show 2>/dev/null)
"""
PROBE = (r"""
p uname "$node"
if [ -r /etc/os-release ]; then . /etc/os-release; p os_id "$ID"; p os_like "$ID_LIKE"; p os_version "$VERSION_ID"; fi
if [ -d /run/systemd/system ]; then p init systemd; else p init other; fi
if command -v dpkg-query >/dev/null 2>&1; then
  p pkg_tool apt
  p pkg_status "$(dpkg-query -W -f '${Status} ${Version}' heartbeat 2>/dev/null)"
else p pkg_tool none; fi
for f in __TOOLS__; do [ -x "$f" ] && p has "$f"; done
command -v ifconfig >/dev/null 2>&1 && p net_tools yes  # heartbeat's IPaddr needs ifconfig
# Every file hbdeploy tracks, in one sha256sum (a missing one is left out).
sha256sum __SUMS__ 2>/dev/null | while read -r h f; do
  case $f in __SUM_KEYS__ esac
done
stat -c '%n %a %U' /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys 2>/dev/null | \
  while read -r f m u; do p "mode_${f##*/}" "$m $u"; done
# What the files say, for plan's "only comments changed" (equivalence.py): ha.cf and
# haresources line by line, read by the shell (base64 was a process for each); authkeys as
# digests only (rekey.PROBE), so the key never leaves the host.
for f in ha.cf haresources; do
  [ -f /etc/ha.d/$f ] || continue
  p "text_$f" ""
  while IFS= read -r l || [ -n "$l" ]; do p "line_$f" "$l"; done </etc/ha.d/$f
done
__KEYRING__
# heartbeat's unit, the guard's and the firewall's (where its unit file is): one call
fw=; [ -f __UNIT__ ] && fw=yes
unit() {  # one unit's block of `systemctl show`, read below
  case $id in
    heartbeat.service) p hb_active "$a"; p hb_enabled "$e"; p hb_pid "$pid"; p hb_invocation "$inv" ;;
    __GUARD_UNIT__) p guard_active "$a"; p guard_enabled "$e" ;;
    __FW_UNIT__) [ "$fw" = yes ] && p fw_unit "$e" ;;
  esac
  id=; a=; e=; pid=; inv=
}
systemctl show -p Id -p ActiveState -p UnitFileState -p MainPID -p InvocationID \
    heartbeat.service __GUARD_UNIT__ __FW_UNIT__ 2>/dev/null | {
  id=; a=; e=; pid=; inv=
  while IFS= read -r l; do
    case $l in
      "") unit ;; Id=*) id=${l#*=} ;; ActiveState=*) a=${l#*=} ;;
      UnitFileState=*) e=${l#*=} ;; MainPID=*) pid=${l#*=} ;; InvocationID=*) inv=${l#*=} ;;
    esac
  done
  unit
}
# Files a run put in place that heartbeat has not re-read yet (layout.UNAPPLIED)
[ -f __UNAPPLIED__ ] && { l=; read -r l <__UNAPPLIED__; p unapplied "$l"; }
# The node's IPv4 addresses (SHARED read them already, when there is a cluster).
[ -n "${addrs+set}" ] || addrs=$(ip -o -4 addr show 2>/dev/null)
while read -r _ dev _ addr _; do [ -n "$addr" ] && p addr "$dev ${addr%/*}"; done <<EOF_ADDRS
$addrs
EOF_ADDRS
# The network interfaces: sysfs lists this namespace's (no process); else ip.
if [ -d /sys/class/net/lo ]; then for l in /sys/class/net/*; do p link "${l##*/}"; done
else ip -o link show 2>/dev/null | while read -r _ dev _; do dev=${dev%:}; p link "${dev%%@*}"; done
fi
if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q 'Status: active'; then p fw_active ufw; fi
if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
  p fw_active firewalld; p fw_firewalld "$(firewall-cmd --version 2>/dev/null)"
fi
command -v iptables >/dev/null 2>&1 && p fw_tool iptables
command -v iptables-restore >/dev/null 2>&1 && p fw_tool iptables-restore
command -v nft >/dev/null 2>&1 && p fw_tool nft
if [ -f __SCRIPT__ ]; then
  b=; while IFS= read -r l; do case $l in "__MARK__"*) b=${l#"__MARK__"}; break ;; esac; done <__SCRIPT__
  p fw_backend "$b"
  # read by this shell in a subshell of its own (`sh` was a process more)
  if ( set -- check; . __SCRIPT__ ) >/dev/null 2>&1; then p fw_check ok; else p fw_check differs; fi
fi
__LOCK__
__SUPERVISION__
__SYSCTL__
""".replace("__LOCK__", lock.PROBE).replace("__SYSCTL__", sysctl.PROBE).replace("__SUPERVISION__", supervision.PROBE).replace("__UNIT__", firewall.UNIT_PATH)
    .replace("__UNAPPLIED__", layout.UNAPPLIED)
    .replace("__GUARD_UNIT__", supervision.GUARD_UNIT_PATH.rsplit("/", 1)[1])
    .replace("__FW_UNIT__", firewall.UNIT_PATH.rsplit("/", 1)[1])
    .replace("__SCRIPT__", firewall.SCRIPT_PATH)
    .replace("__MARK__", firewall.BACKEND_MARK)
    .replace("__KEYRING__", rekey.PROBE.strip()))

# The files summed by the probe's one sha256sum, and the key each sum is reported under.
SUMS = {**{f"{MANAGED_DIR}/{name}": f"sha_{name}" for name in FILES},
        firewall.SCRIPT_PATH: "fw_script",
        **{path: f"sha_{key}" for key, path in supervision.PATHS.items()},
        sysctl.PATH: "sha_sysctl"}
PROBE = PROBE.replace("__SUMS__", " ".join(SUMS)).replace(
    "__SUM_KEYS__", " ".join(f'{path}) p {key} "$h" ;;' for path, key in SUMS.items()))
PKG_INSTALLED = "install ok installed "


TOOLS = " ".join((*layout.TOOLS, layout.IPFAIL))

# Each floating IP: announced in the background where it is held (announce.py's script,
# detached so that the command returns at once), pinged where it is not and heartbeat runs
# (its pid file names a process called heartbeat: shell builtins, no process; the view
# beside says whether it answers).
FLOATING = r"""
pings=""
__READ_MASTER__
[ "$name" = heartbeat ] && running=yes || running=no
for ip in __IPS__; do
  case " $addrs" in *" $ip/"*) held=yes ;; *) held=no ;; esac
  if [ $held = yes ]; then
    if [ __ANNOUNCE__ = yes ]; then
      setsid sh -c '__ANNOUNCE_SCRIPT__' announce "$ip" >/dev/null 2>&1 </dev/null &
      p announced "$ip"
    fi
  elif [ $running = yes ]; then  # (without heartbeat here a deploy has work anyway)
    ( if ping -n -q -c 1 -W 1 "$ip" >/dev/null 2>&1; then p answers "$ip yes"; else p answers "$ip no"; fi ) &
    pings="$pings $!"
  fi
done
for pid in $pings; do wait "$pid"; done
"""


def probe(cluster: Cluster | None = None, node: str = "", announce: bool = False) -> str:
    """The probe for one host. With ``cluster`` and the host's ``node`` name it also reports
    the node's heartbeat view and pings the floating IPs the host does not hold; with
    ``announce`` the host announces those it holds."""
    if cluster is None:
        return HEAD + PROBE.replace("__TOOLS__", TOOLS) + "true\n"
    tools = " ".join((TOOLS, *layout.resource_paths(cluster.resource_scripts())))
    ips = " ".join(shlex.quote(ip) for ip in cluster.floating_ips())
    # Detached, at the start of the run: it repeats for 2 s, past the 1 s during which
    # Linux (neighbour locktime) ignores an update of an entry it has just learned.
    arp = (announce_script.SCRIPT.replace("__PATHS__", " ".join(announce_script.SEND_ARP))
           .replace("__REPEATS__", "10").replace("__IPS__", '"$1"'))
    status_part = ("{\n" + status.probe(cluster, node, links=False) + "\n} 2>/dev/null | "
                   "while IFS= read -r line; do p view \"$line\"; done")
    floating = (FLOATING.replace("__IPS__", ips).replace("__READ_MASTER__", layout.READ_MASTER)
                .replace("__ANNOUNCE__", "yes" if announce else "no")
                .replace("__ANNOUNCE_SCRIPT__", arp.replace("'", "'\\''")))
    # The heartbeat view and the floating IPs run beside the facts, not after them: their
    # cl_status questions mostly wait for heartbeat's answers (status.py), the facts are
    # work for the CPU. The view's lines go through a pipe and follow the facts' (copied by
    # the shell: a `cat` was one process more), so no line of one is cut by the other's.
    return (HEAD + SHARED + "{\n" + status_part + "\n"
            + floating + "} | {\n" + PROBE.replace("__TOOLS__", tools)
            + "while IFS= read -r l; do printf '%s\\n' \"$l\"; done\n}\n")


@dataclass
class HostFacts:
    """What one host has right now."""

    uname: str = ""
    os_id: str = ""
    os_like: str = ""
    os_version: str = ""
    init: str = ""
    pkg_tool: str = ""
    pkg_version: str = ""
    net_tools: str = ""  # "yes" when ifconfig is there (heartbeat's IPaddr needs it)
    checksums: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # ha.cf, haresources as on the host
    norm_authkeys: str = ""  # equivalence.authkeys_digest of the host's authkeys
    auth_using: str = ""  # authkeys' "auth N"
    authkeys: dict[str, tuple[str, str]] = field(default_factory=dict)  # N -> method, digest
    modes: dict[str, str] = field(default_factory=dict)
    hb_active: str = ""
    hb_enabled: str = ""
    hb_pid: int = 0
    hb_invocation: str = ""  # systemd's InvocationID of heartbeat.service (new each start)
    unapplied_line: str = ""  # layout.UNAPPLIED as it is: InvocationID, stamp, files
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (interface, ip)
    links: list[str] = field(default_factory=list)
    has: list[str] = field(default_factory=list)  # heartbeat's tools and resource scripts
    fw_active: list[str] = field(default_factory=list)
    fw_tools: list[str] = field(default_factory=list)
    fw_firewalld: str = ""  # firewalld's version, when it is running
    fw_unit: str = ""
    fw_script: str = ""  # sha256 of hbdeploy's firewall script, when there is one
    fw_backend: str = ""  # the backend that script drives
    fw_check: str = ""  # "ok" when that script finds its rules in place
    nonlocal_bind: str = ""  # net.ipv4.ip_nonlocal_bind in force ("0", "1")
    guard_active: str = ""
    guard_enabled: str = ""
    guard_stopped: str = ""  # "yes" while hbdeploy-guard holds heartbeat stopped
    gateway: str = ""  # the default route's gateway
    view: list[str] = field(default_factory=list)  # status.probe's output lines
    announced: list[str] = field(default_factory=list)  # floating IPs it announced
    answers: dict[str, bool] = field(default_factory=dict)  # floating IP -> answered ping
    lock: str = ""  # the run lock's owner line (lock.py), when there is one
    now: int = 0  # the host's clock (epoch seconds)

    @property
    def installed(self) -> bool:
        return bool(self.pkg_version)

    @property
    def running(self) -> bool:
        return self.hb_active == "active"

    def _unapplied_record(self) -> tuple[str, list[str]]:
        """The record's stamp and files (layout.UNAPPLIED), when it is this heartbeat's:
        ("", []) once heartbeat restarted, or when it does not run."""
        invocation, stamp, *names = [*self.unapplied_line.split(), "", ""]
        if not self.running or not self.hb_invocation or invocation != self.hb_invocation:
            return "", []
        return stamp, [name for name in dict.fromkeys(names) if name in FILES]

    @property
    def unapplied(self) -> list[str]:
        """Files a run put in place that this heartbeat has not re-read (see
        layout.UNAPPLIED): empty once it restarted, or when it does not run."""
        return self._unapplied_record()[1]

    @property
    def unapplied_stamp(self) -> str:
        """The stamp of the backups made just before the first of :attr:`unapplied` was
        put in place (the files heartbeat last read), "" when there are none."""
        stamp, names = self._unapplied_record()
        return stamp if names else ""

    def ips(self) -> set[str]:
        return {ip for _, ip in self.addresses}

    @property
    def keyring(self) -> rekey.KeyRing | None:
        """authkeys' keys (as salted digests), None when the host has no authkeys."""
        if not self.authkeys and not self.auth_using:
            return None
        return rekey.KeyRing(self.auth_using, dict(self.authkeys))

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def parse(output: str) -> HostFacts:
    facts = HostFacts()
    for line in output.split("\n"):  # a file's line may hold any other line break
        key, sep, value = line.partition("\t")
        if not sep:
            continue
        if key.startswith("sha_") and (key[4:] in FILES or key[4:] in supervision.PATHS
                                       or key == "sha_sysctl"):
            facts.checksums[key[4:]] = value
        elif key.startswith("text_") and key[5:] in FILES:
            facts.texts[key[5:]] = ""
        elif key.startswith("line_") and key[5:] in facts.texts:
            facts.texts[key[5:]] += value + "\n"
        elif key.startswith("mode_") and key[5:] in FILES:
            facts.modes[key[5:]] = value
        elif key == "addr":
            dev, _, ip = value.partition(" ")
            facts.addresses.append((dev, ip))
        elif key == "link":
            facts.links.append(value)
        elif key == "fw_active":
            facts.fw_active.append(value)
        elif key == "has":
            facts.has.append(value)
        elif key == "fw_tool":
            facts.fw_tools.append(value)
        elif key == "view":
            facts.view.append(value)
        elif key == "authkey":
            index, method, digest = [*value.split(), "", "", ""][:3]
            facts.authkeys[index] = (method, digest)
        elif key == "announced":
            facts.announced.append(value)
        elif key == "answers":
            ip, _, answered = value.partition(" ")
            facts.answers[ip] = answered == "yes"
        elif key == "now":
            facts.now = int(value) if value.isdigit() else 0
        elif key == "pkg_status":
            facts.pkg_version = (value[len(PKG_INSTALLED):]
                                 if value.startswith(PKG_INSTALLED) else "")
        elif key == "unapplied":
            facts.unapplied_line = value
        elif key == "hb_pid":
            facts.hb_pid = int(value) if value.isdigit() else 0
        elif key in HostFacts.__dataclass_fields__:
            setattr(facts, key, value)
    return facts


def peer_states(cluster: Cluster, node: str, found: HostFacts) -> dict[str, str]:
    """Node ``node``'s peers and their states, as the view in its facts reports them."""
    return status.parse_view(cluster, node, node, "\n".join(found.view)).peers


def listed_by_running(cluster: Cluster, found: Mapping[str, HostFacts]) -> set[str]:
    """Every node that a node running heartbeat lists as a peer in its view (in any state
    but unknown): the members, as the running nodes know them."""
    listed: set[str] = set()
    for name, host in found.items():
        if host.running:
            listed |= {peer for peer, state in peer_states(cluster, name, host).items()
                       if state != "unknown"}
    return listed


def gather(remote: Remote, script: str | None = None) -> HostFacts:
    """Run ``script`` (:func:`probe`; by default the facts alone) on ``remote`` (as root:
    authkeys and iptables need it)."""
    _, out, _ = remote.run(script or probe(), timeout=60, idempotent=True)
    return parse(out)
