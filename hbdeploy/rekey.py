"""Password rotation with no window: the new key reaches running nodes in three passes.

heartbeat signs with the key ``auth N`` names and accepts every key its authkeys lists
(its sample authkeys: "put more than one to make a smooth transition when changing auth
methods and/or keys"). So a deploy that changes the password on two or more running nodes
does not reload them with the new key alone (nodes holding different keys cannot hear each
other); it goes, each pass on every running node before the next pass starts:

1. add: the new key under a second index, beside the old one; still signing with the old;
2. sign: ``auth`` names the new key; both are still accepted;
3. drop: the file as rendered, the new key alone.

Each pass is one command per node (write whole, then rename; SIGHUP; wait until heartbeat
and each of its core processes logged that it re-read the file; the key, when a pass needs
it, staged before by SFTP), all nodes in parallel. The new key keeps its index after the
rotation (1 and 2 alternate): heartbeat only needs every node to know the key its peers
sign with. Every state between passes is one every other node understands, so a rotation
that stops half way (an interrupt, a lost host) is not rolled back: the next deploy goes on
from where it is. The keys never travel in a command line: the new key goes in a staged
0600 file, and the probe reports each key as a salted digest (:func:`fingerprint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shlex
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import equivalence
from .errors import HbdeployError
from .layout import BACKUP_DIR, prune_backups
from .model import Cluster
from .remote import Remote, RemoteError

AUTHKEYS = "/etc/ha.d/authkeys"
MAX_INDEX = 15  # heartbeat's authkeys numbers keys 1 to 15
# heartbeat's master logs the first when authkeys' mtime changed ("Configuration
# unchanged." when it did not: the pass then failed), then each core process (media
# readers and writers, FIFO reader) the second ("Child rereading …") as it takes the new
# keys: all of them are waited for.
REREAD_LINE = "Rereading authentication file"
CHILD_LINE = "rereading authentication file"
REREAD_WAIT = 10  # seconds; heartbeat re-read within a second of the signal in the lab

# One per process: the probe hashes each key with it, so a digest means nothing elsewhere.
SALT = secrets.token_hex(8)

# For the facts probe (inside its p() helper), read by the shell itself (two awk processes
# did it, 3.3 ms of a lab node's CPU each): the key index heartbeat signs with; each key
# as "index method digest", the key hashed by the builtin printf into sha256sum's stdin,
# never an argument of a process; and the whole file's digest (equivalence.
# authkeys_digest: its lines as equivalence.lines reads them, sorted).
PROBE = r"""
if [ -f /etc/ha.d/authkeys ]; then
  set -f; lines=
  while IFS= read -r l || [ -n "$l" ]; do
    set -- $l
    [ $# -gt 0 ] || continue
    case $1 in \#*) continue ;; esac
    lines="$lines$*
"
    if [ "$1" = auth ]; then p auth_using "$2"
    else d=$(printf '%s%s' __SALT__ "$3" | sha256sum); p authkey "$1 $2 ${d%% *}"; fi
  done </etc/ha.d/authkeys
  set +f; set --
  d=$(printf '%s' "$lines" | __DIGEST__); p norm_authkeys "${d%% *}"
fi
""".replace("__SALT__", SALT).replace("__DIGEST__", equivalence.AUTHKEYS_DIGEST_SH)


def fingerprint(secret: str) -> str:
    """What the probe reports for a key: sha256 of the salt and the key."""
    return hashlib.sha256((SALT + secret).encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """A node's authkeys as the probe saw it: the index it signs with, and its keys
    (index -> (method, fingerprint))."""

    using: str
    keys: dict[str, tuple[str, str]]

    def index_of(self, method: str, digest: str) -> str | None:
        return next((i for i, key in sorted(self.keys.items()) if key == (method, digest)),
                    None)

    def is_final(self, index: int, method: str, digest: str) -> bool:
        """Only the wanted key, under ``index``, signing with it."""
        return self.using == str(index) and self.keys == {str(index): (method, digest)}


def wanted(cluster: Cluster) -> tuple[str, str]:
    """(method, fingerprint) of the cluster file's key."""
    return cluster.auth_method, fingerprint(cluster.password.reveal())


def choose_index(cluster: Cluster, rings: Iterable[KeyRing]) -> int:
    """The index the cluster file's key has, or gets: where a node already has it (a
    rotation under way, or done); else ``auth_index`` unless a node uses that index for
    another key; else the lowest index no node uses. HbdeployError when all 15 are taken."""
    rings = list(rings)
    method, digest = wanted(cluster)
    found = sorted(int(i) for ring in rings if (i := ring.index_of(method, digest)))
    if found:
        signing = [int(r.using) for r in rings if r.using.isdigit()
                   and r.keys.get(r.using) == (method, digest)]
        return min(signing or found)
    used = {int(i) for ring in rings for i in ring.keys if i.isdigit()}
    if cluster.auth_index not in used:
        return cluster.auth_index
    free = [i for i in range(1, MAX_INDEX + 1) if i not in used]
    if not free:
        raise HbdeployError("authkeys: every key index (1-15) is taken on the nodes, so the "
                            "new password has no index to go under beside the old one; "
                            "remove unused keys from /etc/ha.d/authkeys")
    return free[0]


@dataclass(frozen=True)
class Pass:
    """One pass of a rotation: its name, what it says, and the nodes it changes."""

    name: str
    says: str
    nodes: tuple[str, ...]


def passes(cluster: Cluster, index: int, rings: dict[str, KeyRing]) -> list[Pass]:
    """The passes the running nodes (``rings``, by node) still need, in order; none when
    every one is final. A node that has the new key already skips "add", and so on."""
    method, digest = wanted(cluster)
    add = tuple(n for n, r in rings.items() if r.keys.get(str(index)) != (method, digest))
    sign = tuple(n for n, r in rings.items() if r.using != str(index))
    drop = tuple(n for n, r in rings.items() if not r.is_final(index, method, digest))
    out = []
    if add:
        out.append(Pass("add", f"the new key added as key {index}, beside the old one "
                               "(still signing with the old)", add))
    if sign:
        out.append(Pass("sign", f"signing with the new key (auth {index}); the old one "
                                "still accepted", sign))
    if drop:
        out.append(Pass("drop", "the old key dropped: the new one alone", drop))
    return out


# One command per node and pass: the new file is made (see _EDITS), written whole and
# renamed into place (the run's first backup of authkeys kept), then heartbeat is
# signalled and the command returns once it has re-read the file, or fails. What a pass
# needs of the key comes in a file staged beforehand (SFTP, mode 0600), removed here.
_PASS = r"""
set -e
f=/etc/ha.d/authkeys; t=__STAGED__; in=__INPUT__; b=__BACKUP_DIR__/authkeys.__STAMP__
trap 'rm -f "$t" "$in"' EXIT
mkdir -p __BACKUP_DIR__ && chmod 700 __BACKUP_DIR__
[ -f "$b" ] || { cp -p "$f" "$b.part" && mv -f "$b.part" "$b"; __PRUNE__; }
umask 077
__EDIT__ > "$t"
# heartbeat re-reads authkeys only when its mtime (whole seconds) differs from the one it
# read: two passes within a second would look unchanged. A second later than the old one.
old=$(stat -c %Y "$f"); new=$(date +%s)
[ "$new" -gt "$old" ] || new=$((old + 1))
touch -d "@$new" "$t"
chmod 600 "$t"; chown root:root "$t"; sync "$t"; mv -f "$t" "$f"
systemctl is-active -q heartbeat.service || { echo "heartbeat is not running" >&2; exit 3; }
main=$(systemctl show -p MainPID --value heartbeat.service)
# Its core processes (media readers and writers, FIFO reader), by their titles: not the
# master's short-lived children (a resource script's, a standby's), which share its title.
core() { ps -o pid=,args= --ppid "$main" | awk '$2 == "heartbeat:" && ($3 == "FIFO" ||
  $3 == "read:" || $3 == "write:") {print $1}'; }
kids=$(core | wc -l)
j="journalctl -u heartbeat.service -o cat"
c=$($j -n 0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p')
systemctl kill --kill-whom=main --signal=HUP heartbeat.service
i=0; read=no
while [ $i -lt __TRIES__ ]; do
  log=$($j --after-cursor="$c" 2>/dev/null)
  if [ $read = no ] && printf '%s\n' "$log" | grep -qF 'Configuration unchanged'; then
    # The master read the new file already (its last signal's re-read is lazy), so it did
    # not signal its core processes: as it would have.
    for pid in $(core); do kill -HUP "$pid"; done
    read=yes
  fi
  printf '%s\n' "$log" | grep -qF '__LINE__' && read=yes
  if [ $read = yes ] && [ "$(printf '%s\n' "$log" | grep -cF 'Child __CHILD__')" -ge "$kids" ]
  then
    # The master parses the file at its next signing or checking of a packet, which
    # comes within a keepalive: only then may the next pass write the file again.
    sleep __SETTLE__
    systemctl is-active -q heartbeat.service && exit 0
    echo "heartbeat exited after re-reading authkeys" >&2; exit 3
  fi
  sleep 0.1
  i=$((i + 1))
done
echo "heartbeat did not re-read authkeys within __WAIT__s of the signal" >&2
exit 3
"""

# How each pass makes the new file from the one in place ("$f") and its input ("$in": the
# new key's line, or the final file).
_EDITS = {
    "add": "{ awk -v n=__INDEX__ '!(NF && $1 == n)' \"$f\"; cat \"$in\"; }",
    "sign": "awk -v n=__INDEX__ '$1 == \"auth\" { print \"auth\", n; next } { print }' \"$f\"",
    "drop": "cat \"$in\"",
}
INPUT = "/etc/ha.d/authkeys-rotation"  # staged as Remote.staged_path(INPUT)


def pass_script(name: str, index: int, stamp: str, keepalive_ms: int = 1000) -> str:
    """The command that applies pass ``name`` on a node (heartbeat's ``keepalive``: how
    long its master may take to parse the file it was told to re-read)."""
    return (_PASS.replace("__EDIT__", _EDITS[name])
            .replace("__SETTLE__", f"{keepalive_ms / 1000 + 0.5:.2f}")
            .replace("__STAGED__", shlex.quote(Remote.staged_path(AUTHKEYS)))
            .replace("__INPUT__", shlex.quote(Remote.staged_path(INPUT)))
            .replace("__PRUNE__", prune_backups("authkeys", f"{BACKUP_DIR}/authkeys.{stamp}"))
            .replace("__BACKUP_DIR__", BACKUP_DIR).replace("__STAMP__", stamp)
            .replace("__INDEX__", str(index)).replace("__LINE__", REREAD_LINE)
            .replace("__CHILD__", CHILD_LINE)
            .replace("__TRIES__", str(REREAD_WAIT * 10))
            .replace("__WAIT__", str(REREAD_WAIT)))


def pass_input(name: str, cluster: Cluster, index: int, final: str) -> str | None:
    """What pass ``name`` needs staged: the new key's line, the final file, or nothing."""
    if name == "add":
        return f"{index} {cluster.auth_method} {cluster.password.reveal()}\n"
    return final if name == "drop" else None


class RotationError(HbdeployError):
    """A pass failed on a node; the message says where the rotation stands."""


def rotate(cluster: Cluster, index: int, plan: list[Pass], remotes: dict[str, Remote],
           finals: dict[str, str], stamp: str, say: Callable[[str, str], None],
           cancelled: Callable[[], bool] = lambda: False) -> None:
    """Apply ``plan`` (from :func:`passes`): each pass on all its nodes at once, and the
    next only once every one of them has re-read its authkeys. ``finals``: each node's
    rendered authkeys. ``say(node, line)`` reports."""
    for number, step in enumerate(plan, 1):
        if cancelled():
            raise RotationError("interrupted before pass " + step.name)
        for node in step.nodes:
            say(node, f"password rotation {number}/{len(plan)}: {step.says}")
        script = pass_script(step.name, index, stamp, cluster.timings.keepalive.ms)

        def one(node: str, step: Pass = step, script: str = script) -> str | None:
            content = pass_input(step.name, cluster, index, finals[node])
            try:
                if content is not None:
                    remotes[node].stage_file(INPUT, content, 0o600)
                remotes[node].run(script, timeout=60)
            except RemoteError as exc:
                with contextlib.suppress(RemoteError):  # the key's file, if the pass left it
                    remotes[node].run(f"rm -f {shlex.quote(Remote.staged_path(INPUT))}",
                                      check=False, timeout=30)
                return str(exc)
            return None

        with ThreadPoolExecutor(max_workers=len(step.nodes)) as pool:
            errors = [e for e in pool.map(one, step.nodes) if e]
        if errors:
            where = ("no node signs with the new key yet" if step.name == "add" else
                     "every node accepts both keys" if step.name == "sign" else
                     "every node signs with the new key")
            raise RotationError(f"password rotation stopped in pass {number} "
                                f"({step.name}): {'; '.join(errors)}. The nodes still hear "
                                f"each other ({where}); rerun deploy to finish the rotation")
