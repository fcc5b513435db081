"""One lab node: an overlay of the cached root, booted by systemd-nspawn in its namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import cgroups
from .network import PREFIX, node_ns
from .sh import LabError, poll, run

CAPABILITIES = "CAP_NET_ADMIN,CAP_NET_RAW,CAP_IPC_LOCK"


@dataclass(frozen=True)
class Machine:
    """A node's files and process; ``index`` is 1-based and fixes its address."""

    name: str
    index: int
    ip: str
    home: Path  # <state>/nodes/<name>

    @property
    def machine_name(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def upper(self) -> Path:
        return self.home / "upper"

    @property
    def work(self) -> Path:
        return self.home / "work"

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def console_log(self) -> Path:
        return self.home / "console.log"

    # -- processes -------------------------------------------------------------------
    def pids(self) -> list[int]:
        """PIDs of systemd-nspawn processes running this node (found in /proc, not a file)."""
        return nspawn_pids().get(self.machine_name, [])

    def running(self) -> bool:
        return bool(self.pids() or netns_pids(node_ns(self.name)))

    def ssh_port_open(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.ip, 22), timeout=timeout) as conn:
                conn.settimeout(timeout)
                return conn.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    # -- files -----------------------------------------------------------------------
    def mounted(self) -> bool:
        return str(self.root) in mount_points()

    def mount(self, image: Path) -> None:
        if self.mounted():
            return
        for folder in (self.upper, self.work, self.root):
            folder.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={image},upperdir={self.upper},workdir={self.work}", str(self.root)])

    def unmount(self) -> None:
        if self.mounted():
            run(["umount", str(self.root)], check=False)
            if self.mounted():
                run(["umount", "-l", str(self.root)])

    def prepare(self, public_key: str) -> None:
        """Host keys of its own (made once) and the lab key for root, written in the overlay."""
        ssh_dir = self.root / "etc/ssh"
        host_key = ssh_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}",
                 "-f", str(host_key)])
        root_ssh = self.root / "root/.ssh"
        root_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = root_ssh / "authorized_keys"
        keys.write_text(public_key)
        keys.chmod(0o600)

    def host_public_key(self) -> str:
        """The node's host key line (type and base64), read from its overlay."""
        text = (self.upper / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        return f"{text[0]} {text[1]}"

    # -- power -----------------------------------------------------------------------
    def boot(self) -> None:
        """Start systemd-nspawn in the background; it outlives this process."""
        if self.running():
            return
        # nspawn is moved into the node's own cgroups before it starts (cgroups.py: in a
        # shared one, the nodes' systemd would see each other's units); if that fails, the
        # node does not boot and wait_ssh shows the console, where sh said why.
        procs = " ".join(str(f) for f in cgroups.procs_files(self.machine_name))
        with self.console_log.open("ab") as log:
            subprocess.Popen(
                ["sh", "-c", 'for f in $0; do echo $$ > "$f" || exit 1; done; exec "$@"', procs,
                 "systemd-nspawn", "--quiet", "-D", str(self.root),
                 f"--machine={self.machine_name}", f"--hostname={self.name}",
                 "--register=no", "--keep-unit", "-b",
                 f"--network-namespace-path=/run/netns/{node_ns(self.name)}",
                 f"--capability={CAPABILITIES}", "--console=read-only",
                 "--resolv-conf=off", "--timezone=off", "--link-journal=no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                # /proc/sys/net writable (the node's own network namespace only), as on a
                # server: nonlocal_bind sets net.ipv4.ip_nonlocal_bind there.
                env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"})

    def wait_ssh(self, deadline: float = 90) -> None:
        try:
            poll(f"{self.name}: sshd", self.ssh_port_open, deadline)
        except LabError:
            tail = self.console_log.read_text(errors="replace").splitlines()[-5:]
            raise LabError(f"{self.name} did not answer ssh within {deadline:.0f}s; "
                           f"console: {' | '.join(tail)}") from None

    def kill(self) -> None:
        """Hard power-off: SIGKILL to every process of the node, then to its nspawn.

        Killing nspawn alone is not enough: its container's init is re-parented and
        lives on, so the node's processes are found by their network namespace.
        """
        for pid in netns_pids(node_ns(self.name)) + self.pids():
            _signal(pid, signal.SIGKILL)
        poll(f"{self.name}: power-off", lambda: not self.running(), 15)
        poll(f"{self.name}: cgroups removed", lambda: cgroups.remove(self.machine_name), 15)

    def shutdown(self) -> None:
        """Ask for a clean power-off (SIGTERM to nspawn); does not wait."""
        for pid in self.pids():
            _signal(pid, signal.SIGTERM)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def nspawn_pids() -> dict[str, list[int]]:
    """Lab nspawn processes by machine name, read from /proc."""
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn"):
            continue
        for arg in argv:
            if arg.startswith(f"--machine={PREFIX}-".encode()):
                found.setdefault(arg.split(b"=", 1)[1].decode(), []).append(int(entry.name))
    return found


def netns_pids(*names: str) -> list[int]:
    """PIDs of processes living in the named network namespaces (a node's processes)."""
    inodes = set()
    for name in names:
        try:
            inodes.add(f"net:[{os.stat(f'/run/netns/{name}').st_ino}]")
        except OSError:
            continue
    if not inodes:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns/net") in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def mount_points() -> list[str]:
    """Every mount point on the host, unescaped from /proc/self/mounts."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            points.append(fields[1].encode().decode("unicode_escape"))
    return points
