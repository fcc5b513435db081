"""Where Debian's heartbeat 3.0.6 package keeps what hbdeploy runs or checks on a node."""

from __future__ import annotations

HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
PIDFILE = "/run/heartbeat.pid"  # the master control process's pid (its unit's PIDFile=)
# Shell: $hb, the pid in PIDFILE, and $name, that process's name ("heartbeat" while the
# master runs; empty where the file or the process is missing). Builtins only.
READ_MASTER = (f'hb=; read -r hb 2>/dev/null <{PIDFILE}; name=; '
               'read -r name 2>/dev/null </proc/"${hb:-0}"/comm')
IPFAIL = "/usr/libexec/heartbeat/ipfail"
RESOURCE_MANAGER = "/usr/share/heartbeat/ResourceManager"
HB_STANDBY = "/usr/share/heartbeat/hb_standby"
HB_TAKEOVER = "/usr/share/heartbeat/hb_takeover"
HB_ADDNODE = "/usr/share/heartbeat/hb_addnode"
HB_DELNODE = "/usr/share/heartbeat/hb_delnode"
CL_STATUS = "/usr/bin/cl_status"
BACKUP_DIR = "/etc/ha.d/.hbdeploy"  # hbdeploy's backups of the files it replaced
BACKUP_GENERATIONS = 5  # backups kept of each file
# Files put in place while heartbeat ran and not yet re-read by it (apply.commit writes it,
# the reload signal clears it): "<heartbeat's systemd InvocationID> <stamp of the backups
# made before the first of them> <file>...". A run that stopped between the two (a lost
# node, a dropped connection, Ctrl-C) leaves it, and the next run reloads or restarts for
# those files. On /run: a reboot starts heartbeat anew, and so does any start (a new
# InvocationID makes the line stale).
UNAPPLIED = "/run/hbdeploy-unapplied"


def prune_backups(name: str, keep: str) -> str:
    """Shell: remove the oldest backups of ``name`` beyond BACKUP_GENERATIONS, never
    ``keep`` (the one just made). The oldest go by the stamp in their names, never by
    mtime: `cp -p` gives a backup its file's mtime, and a file a rollback restored has an
    old one, so by mtime the backup just made sorted last and was pruned at once (a later
    rollback of that run then found "no previous file" and removed haresources: seen in a
    loop of rollbacks)."""
    return (f"ls -1 {BACKUP_DIR}/{name}.* | grep -v -x -e '.*[.]part' -e {keep} | "
            f"LC_ALL=C sort -r | tail -n +{BACKUP_GENERATIONS} | xargs -r rm -f")
# The daemon, its API client, the resource manager and the hand-over tools: what a node
# needs of heartbeat, hbdeploy's own use of it included (``install: false`` checks them).
TOOLS = (HEARTBEAT, CL_STATUS, RESOURCE_MANAGER, HB_STANDBY, HB_TAKEOVER, HB_ADDNODE,
         HB_DELNODE)
RESOURCE_DIRS = ("/etc/ha.d/resource.d", "/etc/init.d")  # where heartbeat looks, in order


def resource_paths(names: tuple[str, ...]) -> tuple[str, ...]:
    """Every place heartbeat would look for these resource scripts."""
    return tuple(f"{folder}/{name}" for name in names for folder in RESOURCE_DIRS)
