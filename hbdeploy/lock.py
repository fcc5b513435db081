"""The run lock: one hbdeploy run that changes a cluster at a time, held on the nodes.

The lock lives on every host a run changes (two operators on two laptops see the same
lock), in ``/run/lock`` (a tmpfs: a reboot clears it), taken and given back under
``flock`` so that two runs racing for it cannot both win. Its owner line names the run
(user, controller host, PID, command) and when it was taken. It is a lease: the holder
renews it every RENEW seconds while it runs, so the lock of a run that died (SIGKILL, a
laptop closed mid-run) expires at most LEASE seconds after its last renewal; a live run's
never does. ``--break-lock`` removes someone else's lock first, and says whose it was.

Reentrant within one process (one token per process): ``decommission`` holds the lock and
calls ``deploy``, which finds it already held by its own run.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from .errors import HbdeployError
from .remote import Remote

OWNER = "/run/lock/hbdeploy.owner"
MUTEX = "/run/lock/hbdeploy.mutex"
LEASE = 120  # seconds a lock outlives its holder's last renewal
RENEW = 20  # seconds between renewals
TOKEN = uuid.uuid4().hex  # this process's runs
FIELDS = ("token", "user", "controller", "pid", "command", "since", "expires")

# The facts probe's part: the owner line as it is, and the node's clock (for expiry).
PROBE = (f'[ -f {OWNER} ] && {{ [ -n "${{now:-}}" ] || now=$(date +%s); p now "$now"; '
         f'l=; IFS= read -r l <{OWNER}; p lock "$l"; }}')

# "acquire", "renew", "release" under flock; "$1" is the action, "$2" our owner line (tab-
# separated FIELDS with expires filled in here from the node's clock), "$3" "break" or "".
SCRIPT = r"""
mkdir -p /run/lock; exec 9>>__MUTEX__ || exit 4
flock -w 10 9 || { echo "busy"; exit 4; }
now=$(date +%s); mine=$(printf '%s' "$2" | cut -f1)
line=$(head -n 1 __OWNER__ 2>/dev/null); token=$(printf '%s' "$line" | cut -f1)
expires=$(printf '%s' "$line" | cut -f7)
write() {
  printf '%s\t%s\n' "$(printf '%s' "$2" | cut -f1-6)" "$((now + __LEASE__))" \
    > __OWNER__.new && mv -f __OWNER__.new __OWNER__
}
case $1 in
acquire)
  if [ -n "$line" ] && [ "$token" != "$mine" ]; then
    if [ "$3" = break ]; then echo "broke	$line"
    elif [ "${expires:-0}" -gt "$now" ] 2>/dev/null; then echo "held	$line	$now"; exit 3
    else echo "expired	$line"; fi
  fi
  write "$@"; echo "acquired" ;;
renew)
  if [ "$token" != "$mine" ]; then echo "lost	$line"; exit 3; fi
  write "$@"; echo "renewed" ;;
release)
  if [ "$token" = "$mine" ]; then rm -f __OWNER__; echo "released"; else echo "not ours"; fi ;;
esac
""".replace("__MUTEX__", MUTEX).replace("__OWNER__", OWNER).replace("__LEASE__", str(LEASE))


class LockError(HbdeployError):
    """Another run holds the lock (or it could not be taken)."""


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, from its owner line."""

    user: str
    controller: str
    pid: str
    command: str
    since: int
    expires: int
    token: str = ""

    @classmethod
    def parse(cls, line: str) -> Owner | None:
        parts = line.strip().split("\t")
        if len(parts) < len(FIELDS):
            return None
        token, user, controller, pid, command, since, expires = parts[:7]
        try:
            return cls(user, controller, pid, command, int(since), int(expires), token)
        except ValueError:
            return None

    def describe(self, now: int | None = None) -> str:
        taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        text = (f"{self.user}@{self.controller} (PID {self.pid}, hbdeploy {self.command}) "
                f"since {taken}")
        if now is not None:
            text += f", expires in {max(0, self.expires - now)} s unless renewed"
        return text


def owner_line(command: str) -> str:
    """This run's owner line (expiry filled in on the node)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid {os.getuid()}"
    fields = (TOKEN, user, socket.gethostname(), str(os.getpid()), command,
              str(int(time.time())), "0")
    return "\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields)


def held_by_other(lock_line: str, now: int) -> Owner | None:
    """The owner of a lock the facts probe found, when it is another run's and live."""
    owner = Owner.parse(lock_line)
    if owner is None or owner.token == TOKEN or owner.expires <= now:
        return None
    return owner


def refusal(host: str, owner: Owner, now: int | None = None) -> str:
    return (f"{host}: locked by another hbdeploy run: {owner.describe(now)}; wait for it, or "
            f"if that run is dead give --break-lock (or wait for the lock to expire, at most "
            f"{LEASE} s after its holder stopped renewing it)")


class _Held:
    """Process-wide: how many times each host's lock is held by this process."""

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}
        self.mutex = threading.Lock()


_HELD = _Held()


def _script(action: str, line: str, breaking: bool) -> str:
    return (f"sh -c {shlex.quote(SCRIPT)} lock {action} {shlex.quote(line)} "
            f"{'break' if breaking else '-'}")


def _parallel(func: Callable[[Remote], object], remotes: Sequence[Remote]) -> list[object]:
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(remotes)))) as pool:
        return list(pool.map(func, remotes))


@contextmanager
def holding(remotes: Sequence[Remote], command: str, *, break_lock: bool = False,
            out: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the lock on every host of ``remotes`` for the ``with`` block; LockError (and
    nothing held) when another live run holds it on any of them."""
    line = owner_line(command)
    fresh = []
    with _HELD.mutex:
        for remote in remotes:
            if _HELD.depth.get(remote.label, 0) == 0:
                fresh.append(remote)
            _HELD.depth[remote.label] = _HELD.depth.get(remote.label, 0) + 1
    taken: list[Remote] = []
    try:
        if fresh:
            _acquire(fresh, line, break_lock, out, taken)
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(taken, line, stop, out), daemon=True)
        if taken:  # (a reentrant hold renews nothing: the outer one does)
            renewer.start()
        try:
            yield
        finally:
            stop.set()
            if taken:
                renewer.join(40)  # a renewal under way ends before the release
    finally:
        with _HELD.mutex:
            for remote in remotes:
                _HELD.depth[remote.label] -= 1
        _release(taken, line)


def _acquire(remotes: Sequence[Remote], line: str, breaking: bool,
             out: Callable[[str], None], taken: list[Remote]) -> None:
    def one(remote: Remote) -> tuple[Remote, int, str]:
        try:
            code, stdout, _ = remote.run(_script("acquire", line, breaking), check=False,
                                         timeout=30, idempotent=True)
        except HbdeployError as exc:
            return remote, 5, str(exc)
        return remote, code, stdout

    problems = []
    for remote, code, stdout in _parallel(one, remotes):  # type: ignore[misc]
        first = stdout.strip().splitlines()[0] if stdout.strip() else ""
        kind, _, rest = first.partition("\t")
        if code == 0:
            taken.append(remote)
            previous = Owner.parse(rest)
            if kind == "broke" and previous:
                out(f"[{remote.label}] broke the lock of {previous.describe()}")
            elif kind == "expired" and previous:
                out(f"[{remote.label}] took over the expired lock of {previous.describe()}")
        elif code == 3:
            owner_part, _, now = rest.rpartition("\t")
            owner = Owner.parse(owner_part)
            problems.append(refusal(remote.label, owner, int(now) if now.isdigit() else None)
                            if owner else f"{remote.label}: locked ({rest})")
        elif code == 5:
            problems.append(stdout)
        else:
            problems.append(f"{remote.label}: the lock could not be taken ({first or code})")
    if problems:
        raise LockError("refused, nothing was changed:\n  " + "\n  ".join(problems))


def _renew(remotes: Sequence[Remote], line: str, stop: threading.Event,
           out: Callable[[str], None]) -> None:
    while not stop.wait(RENEW):
        for remote in remotes:
            with suppress(HbdeployError):
                code, stdout, _ = remote.run(_script("renew", line, False), check=False,
                                             timeout=30, idempotent=True)
                if code == 3:
                    out(f"[{remote.label}] warning: this run's lock was taken away "
                        f"({stdout.strip()}); another run may now change this host too")


def _release(remotes: Sequence[Remote], line: str) -> None:
    def one(remote: Remote) -> None:
        for _attempt in range(2):  # a connection a cut link killed: once more, reconnected
            try:
                remote.run(_script("release", line, False), check=False, timeout=30,
                           idempotent=True)
                return
            except HbdeployError:
                with suppress(Exception):
                    remote.connection.close()

    if remotes:
        _parallel(one, remotes)
