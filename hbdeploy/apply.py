"""Operations: the changes a plan asks for, made on one host. Each is idempotent."""

from __future__ import annotations

import contextlib
import os
import shlex
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from . import firewall, supervision, sysctl
from .layout import BACKUP_DIR, RESOURCE_MANAGER, UNAPPLIED, prune_backups
from .plan import HostPlan
from .remote import Remote, RemoteError

# Seconds to wait for another process's dpkg/apt lock ($HBDEPLOY_DPKG_WAIT to change it).
DPKG_WAIT = int(os.environ.get("HBDEPLOY_DPKG_WAIT", "120") or 120)
APT_PACKAGES = "heartbeat net-tools"
APT_OPTIONS = "-y -q --no-install-recommends -o Dpkg::Options::=--force-confold"

# Before any host is changed: every host that installs can (the dpkg lock is free within
# DPKG_WAIT, dpkg's state is sound, every package is in the cache or can be fetched). It
# changes nothing but apt's cache and package lists. Exit 3 with "why<TAB>detail" if not.
APT_READY = r"""
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
holder() {  # who holds a dpkg/apt lock: "PID (command)", from /proc/locks
  for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/cache/apt/archives/lock \
           /var/lib/apt/lists/lock; do
    [ -e "$f" ] || continue
    ino=$(stat -c %i "$f")
    for pid in $(awk -v ino="$ino" '$2 != "->" { n = split($6, d, ":"); if (d[n] == ino) print $5 }' /proc/locks); do
      [ -r /proc/$pid/cmdline ] || continue
      printf '%s: PID %s (%s)' "$f" "$pid" "$(tr '\0' ' ' < /proc/$pid/cmdline | cut -c1-80)"
      return 0
    done
  done
  return 1
}
deadline=$(( $(date +%s) + __WAIT__ ))
while h=$(holder); do
  [ "$(date +%s)" -ge "$deadline" ] && { printf 'dpkg-locked\t%s\n' "$h"; exit 3; }
  sleep 1
done
audit=$(dpkg --audit 2>&1 | head -n 4 | tr '\n' ' ')
[ -n "$audit" ] && { printf 'dpkg-broken\t%s\n' "$audit"; exit 3; }
get="apt-get install --download-only __OPTIONS__ __PACKAGES__"
if ! $get >/tmp/.hbdeploy-apt.log 2>&1; then
  apt-get update -q >>/tmp/.hbdeploy-apt.log 2>&1
  if ! $get >>/tmp/.hbdeploy-apt.log 2>&1; then
    printf 'fetch-failed\t%s\n' "$(grep -E '^(E|W|Err):' /tmp/.hbdeploy-apt.log | head -n 3 | tr '\n' ' ')"
    exit 3
  fi
fi
echo ready
"""

APT_INSTALL = r"""
set -e
export DEBIAN_FRONTEND=noninteractive
had_pacemaker=no
dpkg-query -W -f '${Status}' pacemaker 2>/dev/null | grep -q 'install ok installed' && had_pacemaker=yes
# Keep services from starting half-configured during the install.
own_policy=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=yes
fi
trap '[ "$own_policy" = yes ] && rm -f /usr/sbin/policy-rc.d' EXIT
# Without its Recommends: they bring pacemaker, corosync, fence-agents and ~90 other packages
# that heartbeat's own resource manager (crm off) never uses (55 packages instead of 142).
# net-tools is not a dependency, but heartbeat's IPaddr resource needs ifconfig and route.
install="apt-get install -o DPkg::Lock::Timeout=__WAIT__ __OPTIONS__ __PACKAGES__"
# Into a file, not the SSH session: should the session die (hbdeploy killed, a lost link),
# apt finishes instead of being cut down by SIGPIPE in the middle of dpkg.
log=/var/log/hbdeploy-apt.log
if ! $install </dev/null >$log 2>&1; then tail -n 5 $log >&2; exit 1; fi
cat $log
# Should pacemaker and corosync have come along anyway (an apt configuration that installs
# Recommends regardless), they are not used with crm off: disabled when they came now.
if [ "$had_pacemaker" = no ] && dpkg-query -W -f '${Status}' pacemaker 2>/dev/null | grep -q 'install ok installed'; then
  systemctl disable --now pacemaker.service corosync.service >/dev/null 2>&1 || true
  echo "disabled pacemaker and corosync (installed as heartbeat dependencies, unused with crm off)"
fi
"""


def _apt(script: str) -> str:
    return (script.replace("__WAIT__", str(DPKG_WAIT)).replace("__OPTIONS__", APT_OPTIONS)
            .replace("__PACKAGES__", APT_PACKAGES))


APT_READY, APT_INSTALL = _apt(APT_READY), _apt(APT_INSTALL)

APT_FAILURES = {
    "dpkg-locked": (f"another process held the dpkg lock for more than {DPKG_WAIT} s: {{}}; "
                    "let it finish (or stop it), then rerun"),
    "dpkg-broken": ("dpkg's state is broken (an earlier install was interrupted): {}; run "
                    "`dpkg --configure -a` (and `apt-get -f install`) on it, then rerun"),
    "fetch-failed": ("the packages could not be fetched (is the host's package mirror "
                     "reachable?): {}"),
}


def ready_to_install(remote: Remote, plan: HostPlan | None = None) -> None:
    """RemoteError naming the cause when the host could not install now."""
    code, out, err = remote.run(APT_READY, check=False, timeout=DPKG_WAIT + 600,
                              idempotent=True)
    why, _, detail = out.strip().splitlines()[-1].partition("\t") if out.strip() else ("", "", "")
    if code == 3 and why in APT_FAILURES:
        raise RemoteError(f"{remote.label}: cannot install: "
                          + APT_FAILURES[why].format(detail.strip() or "no detail"))
    if code != 0:
        raise RemoteError(f"{remote.label}: cannot install: the apt check exited {code}: "
                          + " | ".join((err or out).strip().splitlines()[-3:]))


def install(remote: Remote, plan: HostPlan | None = None) -> str:
    """Install heartbeat with apt, with net-tools for its IPaddr."""
    _, out, _ = remote.run(APT_INSTALL, timeout=900)
    return out


def stage(remote: Remote, plan: HostPlan, names: list[str]) -> None:
    """Write each file beside its place (Remote.stage_file); the files in use are untouched.
    On a failure every file staged here is removed again (RemoteError)."""
    try:
        for name in names:
            rendered = plan.files[name]
            remote.stage_file(rendered.remote_path, rendered.content, rendered.mode)
    except RemoteError:
        discard(remote, names)
        raise


# Records files about to be put in place for a running heartbeat (layout.UNAPPLIED): the
# stamp of the first unapplied change is kept, the file names added.
_UNAPPLIED = r"""if systemctl is-active -q heartbeat.service; then
  i=$(systemctl show -p InvocationID --value heartbeat.service); j=; s=; f=
  read -r j s f 2>/dev/null <__PATH__ || true
  [ -n "$i" ] && [ "$j" = "$i" ] || { s=__STAMP__; f=; }
  echo "$i $s $f __NAMES__" >__PATH__.new && mv -f __PATH__.new __PATH__
fi"""


def commit(remote: Remote, names: list[str], stamp: str, rereads: Sequence[str] = ()
           ) -> None:
    """Back up the files about to change (each copy made whole before it counts), then
    rename the staged files into place, in one command. A failure (a full disk during a
    backup) leaves the files in use as they were, and nothing staged: RemoteError.

    ``rereads``, those of ``names`` heartbeat must read anew, are first recorded as not
    re-read yet (layout.UNAPPLIED) where heartbeat runs; the reload signal clears that."""
    if not names:
        return
    lines = [f"mkdir -p /etc/ha.d {BACKUP_DIR} && chmod 700 {BACKUP_DIR}"]
    if rereads:
        lines.append("{ " + _UNAPPLIED.replace("__PATH__", UNAPPLIED)
                     .replace("__STAMP__", stamp).replace("__NAMES__", " ".join(rereads))
                     + "; }")
    staged = [Remote.staged_path(f"/etc/ha.d/{name}") for name in names]
    for name in names:
        src, backup = f"/etc/ha.d/{name}", f"{BACKUP_DIR}/{name}.{stamp}"
        lines.append(f"if [ -f {src} ]; then cp -p {src} {backup}.part && mv -f {backup}.part "
                     f"{backup}; {prune_backups(name, backup)}; fi")
    lines.append(f"chown root:root {' '.join(staged)} && sync {' '.join(staged)}")
    lines += [f"mv -f {tmp} /etc/ha.d/{name}" for tmp, name in zip(staged, names, strict=True)]
    script = " && ".join(lines)
    try:
        remote.run(f"{{ {script}; }} || {{ rm -f {' '.join(staged)} {BACKUP_DIR}/*.part; "
                   "exit 1; }")
    except RemoteError as exc:
        raise RemoteError(f"{exc}; the files in use are unchanged") from None


def reset_unapplied(remote: Remote, line: str) -> None:
    """Put the record of files heartbeat has not re-read (layout.UNAPPLIED) back to
    ``line``, as the run found it ("": none), after a rollback of files never re-read."""
    if line:
        remote.run(f"echo {shlex.quote(line)} >{UNAPPLIED}.new && "
                   f"mv -f {UNAPPLIED}.new {UNAPPLIED}", idempotent=True)
    else:
        remote.run(f"rm -f {UNAPPLIED}", idempotent=True)


def discard(remote: Remote, names: list[str]) -> None:
    """Remove what :func:`stage` left (best effort)."""
    staged = " ".join(Remote.staged_path(f"/etc/ha.d/{name}") for name in names)
    if staged:
        with contextlib.suppress(RemoteError):
            remote.run(f"rm -f {staged}", check=False, timeout=30)


def restore(remote: Remote, names: list[str], stamp: str) -> tuple[list[str], list[str]]:
    """Put back the files backed up under ``stamp``; a file that did not exist is removed.
    Returns (restored, removed)."""
    restored, removed = [], []
    for name in names:
        backup = f"{BACKUP_DIR}/{name}.{stamp}"
        _, out, _ = remote.run(
            f"if [ -f {backup} ]; then cp -p {backup} /etc/ha.d/.{name}.restore && "
            f"mv -f /etc/ha.d/.{name}.restore /etc/ha.d/{name}; "
            f"else rm -f /etc/ha.d/{name} && echo removed; fi", idempotent=True)
        (removed if out.strip() == "removed" else restored).append(name)
    return restored, removed


def _enable_and_reload(unit: str) -> str:
    """The command that enables ``unit`` (its file just written) and has systemd read it:
    one reload. `enable` reloads systemd by itself unless told not to, so enabling after a
    daemon-reload read every unit (and ran every generator) twice."""
    return f"systemctl --no-reload enable -q {unit} && systemctl daemon-reload"


def apply_firewall(remote: Remote, plan: HostPlan, text: str | None = None) -> None:
    """Install the firewall script (``text``, or the plan's) and, where the backend needs
    it, its boot unit, then run it. Rules an earlier run left with another backend are
    removed first."""
    script = firewall.SCRIPT_PATH
    if plan.facts.fw_backend and plan.facts.fw_backend != plan.firewall_backend:
        remote.run(f"sh {script} remove")
    remote.write_file(script, plan.firewall_script if text is None else text, 0o755)
    if firewall.boot_unit(plan.firewall_backend):
        # Run through the unit, so that it is active: a restart of nftables.service or
        # netfilter-persistent (PartOf) then restarts it and puts the rules back.
        remote.write_file(firewall.UNIT_PATH, firewall.UNIT, 0o644)
        # Status 219/CGROUP: systemd could not put the new process in the unit's cgroup, so
        # the script never ran; seen once in the lab (nspawn), gone on the next try.
        unit = "hbdeploy-firewall.service"
        remote.run(f"{_enable_and_reload(unit)} && "
                   f"{{ systemctl restart {unit} || {{ [ \"$(systemctl show -p ExecMainStatus "
                   f"--value {unit})\" = 219 ] && systemctl restart {unit}; }} || {{ "
                   f"journalctl -u {unit} -n 5 --no-pager -o cat >&2; exit 1; }}; }}",
                   timeout=120)
        return
    if plan.facts.fw_unit:
        _remove_unit(remote)
    remote.run(f"{script} apply", timeout=120)


def narrow_firewall(remote: Remote, plan: HostPlan) -> None:
    """The plan's own firewall script in place of the wider one apply_firewall put there
    (``plan.firewall_wide``) and applied: its unit, if any, is in place and runs the same
    path, which now holds these rules."""
    remote.write_file(firewall.SCRIPT_PATH, plan.firewall_script, 0o755)
    remote.run(f"{firewall.SCRIPT_PATH} apply", timeout=120)


def _remove_unit(remote: Remote) -> None:
    remote.run(f"systemctl disable hbdeploy-firewall.service >/dev/null 2>&1 || true; "
               f"rm -f {firewall.UNIT_PATH}; systemctl daemon-reload")


def remove_firewall(remote: Remote) -> bool:
    """Take hbdeploy's rules, script and unit away; True when there was something to remove.
    A chain HBDEPLOY left without its script (an interrupted run) goes too."""
    chain = firewall.iptables.CHAIN
    _code, out, _ = remote.run(
        f"found=no; if [ -f {firewall.SCRIPT_PATH} ]; then sh {firewall.SCRIPT_PATH} remove; "
        "found=yes; fi; "
        f"if command -v iptables >/dev/null && iptables -w -S {chain} >/dev/null 2>&1; then "
        f"while iptables -w -C INPUT -j {chain} 2>/dev/null; do "
        f"iptables -w -D INPUT -j {chain}; done; iptables -w -F {chain}; "
        f"iptables -w -X {chain}; found=yes; fi; "
        f"if [ -f {firewall.UNIT_PATH} ]; then found=yes; fi; echo $found", timeout=120)
    _remove_unit(remote)
    remote.run(f"rm -f {firewall.SCRIPT_PATH}")
    return out.strip().endswith("yes")


def supervise(remote: Remote, plan: HostPlan) -> None:
    """Write the heartbeat drop-in and hbdeploy-guard where they changed, then have systemd
    read them and (re)start the guard. heartbeat itself is not restarted: the drop-in's
    restart policy applies to the running service after the daemon-reload."""
    if plan.changed_supervision:
        remote.run(f"mkdir -p {supervision.DROPIN_DIR}")
    for key in plan.changed_supervision:
        rendered = plan.supervision[key]
        remote.write_file(rendered.remote_path, rendered.content, rendered.mode)
    remote.run(f"{_enable_and_reload('hbdeploy-guard.service')} && "
               "systemctl restart hbdeploy-guard.service", timeout=120)


def apply_sysctl(remote: Remote, plan: HostPlan) -> None:
    """hbdeploy's nonlocal_bind file written and in force, or removed (sysctl.py)."""
    if plan.sysctl == "write":
        remote.write_file(sysctl.PATH, sysctl.CONTENT, 0o644)
        remote.run(sysctl.APPLY)
    elif plan.sysctl == "remove":
        remove_sysctl(remote)


def remove_sysctl(remote: Remote) -> None:
    remote.run(sysctl.REMOVE)


def remove_supervision(remote: Remote) -> None:
    """Take the drop-in and hbdeploy-guard away (a node leaving the cluster)."""
    remote.run(supervision.REMOVE, timeout=120)


def enable(remote: Remote) -> None:
    """Enabled at boot (and unmasked: a spare that `replace` makes a member is masked).
    Asked first: the package's install has enabled it already, and `unmask` and `enable`
    each reload systemd, `enable` through update-rc.d too (heartbeat also ships an init
    script): 0.7 s on an idle lab node, 1.3 s on a node of a 4-node cold deploy."""
    remote.run('case "$(systemctl is-enabled heartbeat.service 2>/dev/null)" in enabled) ;; '
               "*) systemctl unmask heartbeat.service >/dev/null 2>&1; "
               "systemctl enable heartbeat.service >/dev/null 2>&1 ;; esac", idempotent=True)


def stop(remote: Remote) -> None:
    """Stop heartbeat gracefully: it releases its resources as its haresources lists them.
    Run again after a lost connection: a second stop waits for the first's job, or finds
    heartbeat stopped."""
    remote.run("systemctl stop heartbeat.service", timeout=600, idempotent=True)


RESTARTED = "/run/hbdeploy-restart"  # the last restart asked: its token, the InvocationID before

# "$1": the call's token. The first run records the token and heartbeat's InvocationID (a
# new one each start), then restarts. A run that finds its own token is the same call run
# again after the connection was lost (Remote.run): it does not restart a second time, but
# waits for the restart job the first run queued; when heartbeat's InvocationID changed, the
# restart took place (exit 0 when heartbeat is active, as `systemctl restart` would); when
# it did not and no job is queued, the first run never reached systemd, and it restarts now.
_RESTART = r"""
inv() { systemctl show -p InvocationID --value heartbeat.service 2>/dev/null; }
if read -r t before < __RESTARTED__ 2>/dev/null && [ "$t" = "$1" ]; then
  end=$(( $(date +%s) + 590 ))
  while :; do  # its job queued or running (whatever the words when there is none)
    case $(systemctl list-jobs --no-legend heartbeat.service 2>/dev/null) in
      *heartbeat.service*) ;; *) break ;; esac
    [ "$(date +%s)" -lt "$end" ] || { echo "heartbeat's restart job did not end" >&2; exit 3; }
    sleep 0.2
  done
  now=$(inv)
  if [ -n "$now" ] && [ "$now" != "$before" ]; then
    echo "the connection was lost while heartbeat restarted: it restarted once, not again"
    systemctl is-active -q heartbeat.service; exit
  fi
  echo "the connection was lost before the restart reached systemd: restarted now"
fi
echo "$1 $(inv)" > __RESTARTED__
systemctl restart heartbeat.service
""".replace("__RESTARTED__", RESTARTED)


def restart(remote: Remote, token: str | None = None) -> str:
    """(Re)start heartbeat; a graceful stop hands this node's resources to a peer.

    Restarted once even when the connection drops while it runs and the command is run
    again (_RESTART): a second restart would be a second stop and start of the node's
    heartbeat, and a second move of the resources it holds. Returns what the run again
    found and did ("" when it was not needed); ``token`` is for tests."""
    _, out, _ = remote.run("# systemctl restart heartbeat.service, once (apply._RESTART)\n"
                           f"set -- {token or uuid.uuid4().hex}" + _RESTART, timeout=600,
                           idempotent=True)
    return out.strip()


# heartbeat's ResourceManager, when a resource of a group fails to start, gives the group up
# and runs `(sleep 30; hb_standby ...) &`: a standby request 30 s later. The unit's
# KillMode=process leaves that subshell running across restarts, so after a rollback it
# asked a cluster already back on its previous files for a pointless standby (a loop of
# the rollback test: the exchange it started wedged the next handover). The subshell (its
# cmdline ResourceManager's, its child that sleep) is ended first, then the sleep.
CANCEL_STANDBY = r"""
n=0
for d in /proc/[0-9]*; do
  c=; read -r c 2>/dev/null <"$d/comm" || continue
  [ "$c" = sleep ] || continue
  pp=$(awk '/^PPid:/ { print $2 }' "$d/status" 2>/dev/null)
  [ -n "$pp" ] && [ -r "/proc/$pp/cmdline" ] || continue
  case "$(tr '\0' ' ' <"/proc/$pp/cmdline" 2>/dev/null)" in
    *"__RM__ takegroup"*) kill -TERM "$pp" 2>/dev/null && kill -TERM "${d#/proc/}" 2>/dev/null
                          n=$((n + 1)) ;;
  esac
done
echo "$n"
""".replace("__RM__", RESOURCE_MANAGER)


def cancel_pending_standby(remote: Remote) -> int:
    """End the standby requests heartbeat's ResourceManager scheduled after a failed start
    (CANCEL_STANDBY); how many there were."""
    _, out, _ = remote.run(CANCEL_STANDBY, check=False, timeout=30, idempotent=True)
    last = out.strip().splitlines()[-1:] or ["0"]
    return int(last[0]) if last[0].isdigit() else 0


# Logged by heartbeat each time it starts reading its files: after the re-exec a changed
# ha.cf causes, or after a restart of its own that came in between (either way the new
# files are read).
REEXEC_LINE = "Configuration validated. Starting heartbeat"
# Logged by heartbeat's master on the signal when ha.cf's mtime is the one it read the file
# at (hb_signal.c), that is when a restart of its own between the new file's rename and the
# signal read the new ha.cf already (CI: after a healed cut heartbeat restarted itself
# ("Both machines own our resources"), 0.3 s before the deploy's signal, which it answered
# "Configuration unchanged."). No re-exec follows: the running heartbeat has the new file.
CURRENT_LINES = ("Configuration unchanged.", "Rereading authentication file.")
REEXEC_WAIT = 15  # seconds; the re-exec came about 2 s after the signal in the lab

UNSTICK_AFTER = 2.5  # seconds after the signal; a re-exec normally follows within 2 s

# The mark taken just before a reload signal, so that only what follows it counts: the
# time, and where heartbeat's journal stood (its cursor, else the time), in "$m".
_MARK = ("c=$(journalctl -u heartbeat.service -n 0 --show-cursor -o cat 2>/dev/null | "
         "sed -n 's/^-- cursor: //p'); "
         'if [ -n "$c" ]; then after="--after-cursor=$c"; else after="--since=@$(date +%s)"; fi; '
         'm="$(date +%s.%N) $after"; ')
SIGNALLED = "/run/hbdeploy-reload"  # the last reload signal: its token and its mark

# Waits for the re-exec. Before it, heartbeat's master SIGTERMs its core processes (media
# readers and writers, FIFO reader) and waits for every one to exit; one that never did
# wedged heartbeat for good (CI: "Core process N exited. 2 remaining", then nothing; its
# peers declared it dead). Once the master has begun ("killing HB..." in the journal), such
# a process, older than the signal, is killed (SIGKILL) UNSTICK_AFTER seconds after the
# signal, and the master goes on to re-exec.
_AWAIT = r"""
main=$(systemctl show -p MainPID --value heartbeat.service)
unstuck=""
i=0
while [ $i -lt __TRIES__ ]; do
  if journalctl -u heartbeat.service __AFTER__ -o cat 2>/dev/null | grep -qF __LINES__; then
    [ -n "$unstuck" ] && echo "unstuck$unstuck"
    exit 0
  fi
  age=$(awk -v s=__SIGNALLED__ -v n="$(date +%s.%N)" 'BEGIN {print int(n - s)}')
  late=$(awk -v s=__SIGNALLED__ -v n="$(date +%s.%N)" -v u=__UNSTICK__ 'BEGIN {print (n - s >= u)}')
  if [ "$late" = 1 ] && [ -z "$unstuck" ] && [ "$main" != 0 ] && journalctl \
      -u heartbeat.service __AFTER__ -o cat 2>/dev/null | grep -q 'killing HB'; then
    for pid in $(ps -o pid=,etimes=,args= --ppid "$main" | awk -v a="$age"         '$2 > a && $3 == "heartbeat:" && $4 != "master" {print $1}'); do
      kill -9 "$pid" 2>/dev/null && unstuck="$unstuck $pid"
    done
    [ -n "$unstuck" ] || unstuck=" "
  fi
  sleep 0.2
  i=$((i + 1))
done
echo "heartbeat did not re-execute itself within __WAIT__s of the reload signal, so it still runs on the previous ha.cf" >&2
exit 3
"""


def signal_reload(remote: Remote) -> str:
    """SIGHUP to the heartbeat systemd supervises; returns the mark taken just before (for
    :func:`await_reexec`). This is what ``heartbeat -r`` sends, but ``-r`` finds the daemon
    through its PID file; systemd's MainPID is the one it runs. (A CI run once left a node
    on its old key after ``-r``, its next stop hanging.)

    Sent once even when the connection drops while it runs and the command is run again:
    the signal is recorded on the node (SIGNALLED) under a token of this call, and a rerun
    that finds the token only says the mark again. A second signal would re-execute
    heartbeat a second time."""
    token = uuid.uuid4().hex
    _, out, _ = remote.run(
        f'if read -r t m < {SIGNALLED} 2>/dev/null && [ "$t" = {token} ]; then '
        'echo "mark $m"; exit 0; fi; '
        "systemctl is-active -q heartbeat.service || exit 0; " + _MARK
        + "systemctl kill --kill-whom=main --signal=HUP heartbeat.service && "
        f'echo "{token} $m" > {SIGNALLED}; rm -f {UNAPPLIED}; echo "mark $m"', timeout=60,
        idempotent=True)
    return next((line[5:] for line in out.splitlines() if line.startswith("mark ")), "")


def await_reexec(remote: Remote, mark: str) -> str:
    """Return once heartbeat has re-executed itself (or started anew) after the signal
    marked by ``mark``, or said on the signal that it runs on the file there already
    (CURRENT_LINES); the text says what was done to get there ("" when nothing).

    heartbeat applies a changed ha.cf by re-executing itself (``-R``, resources kept) about
    two seconds after the SIGHUP; until then it still runs on the old file, and a node
    checked or handed work in between was seen to miss a takeover and to refuse a standby
    (CI). A re-exec stuck on a core process is freed (see _AWAIT). Raises RemoteError when
    the re-exec does not come within REEXEC_WAIT seconds."""
    if not mark:
        return ""  # heartbeat was not running: nothing was signalled
    signalled, after = mark.split(" ", 1)
    script = (_AWAIT.replace("__TRIES__", str(REEXEC_WAIT * 5))
              .replace("__AFTER__", shlex.quote(after))
              .replace("__LINES__", " ".join(f"-e {shlex.quote(line)}"
                                             for line in (REEXEC_LINE, *CURRENT_LINES)))
              .replace("__SIGNALLED__", signalled).replace("__UNSTICK__", str(UNSTICK_AFTER))
              .replace("__WAIT__", str(REEXEC_WAIT)))
    _, out, _ = remote.run(script, timeout=REEXEC_WAIT + 30, idempotent=True)
    pids = next((line.split()[1:] for line in out.splitlines() if line.startswith("unstuck")),
                [])
    if pids:
        return (f"heartbeat's re-exec was stuck on core process(es) {', '.join(pids)} that "
                "ignored its SIGTERM: killed them (SIGKILL), and it re-executed")
    return ""


def await_reexecs(marks: Sequence[tuple[Remote, str]]) -> list[str | RemoteError]:
    """:func:`await_reexec` on every host at once (each host's signal ``mark``), for nodes
    signalled together: a re-exec stuck on a core process is freed only by its own host's
    wait, so none may wait behind another. Per host, in order: what the wait had to do, or
    its RemoteError."""
    def one(item: tuple[Remote, str]) -> str | RemoteError:
        try:
            return await_reexec(*item)
        except RemoteError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(marks))) as pool:
        return list(pool.map(one, marks))


def reload(remote: Remote, reexec: bool) -> str:
    """Make heartbeat re-read its files, keeping its resources: authkeys is re-read on the
    signal; a changed ha.cf (``reexec``) makes heartbeat re-execute itself, awaited here.
    Returns what :func:`await_reexec` had to do ("" when nothing)."""
    mark = signal_reload(remote)
    return await_reexec(remote, mark) if reexec else ""


def journal(remote: Remote, lines: int = 15) -> str:
    _code, out, _ = remote.run(f"journalctl -u heartbeat -n {lines} --no-pager -o cat",
                              check=False, timeout=30)
    return out.strip()


def wait_until(what: str, test, deadline: float, interval: float = 0.5):
    """Poll ``test()`` (returning a truthy value when done) until ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        result = test()
        if result:
            return result
        if time.monotonic() > end:
            raise RemoteError(f"{what}: not within {deadline:.0f}s")
        time.sleep(interval)

