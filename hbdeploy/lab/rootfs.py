"""The lab's node images: a debootstrapped Debian root per release (bookworm, trixie),
each built once and cached.

The root holds everything a node needs to boot and be reached (systemd, sshd, iproute2,
iptables, nftables, a tiny HTTP probe server) but NOT heartbeat: its .debs and every
dependency wait in the apt cache, with the apt lists kept, so a deploy's
``apt-get install heartbeat`` succeeds inside a node with no network. ufw and firewalld
wait there too, for the tests that put a node behind one of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from .machine import mount_points
from .sh import LabError, Report, run, run_with_progress

DEFAULT_RELEASE = "bookworm"
RELEASES = ("bookworm", "trixie")  # Debian 12 and 13: the systems hbdeploy supports
PACKAGES = (
    "openssh-server", "systemd", "systemd-sysv", "dbus", "iproute2", "iptables", "nftables",
    "procps", "python3-minimal", "iputils-ping", "ca-certificates", "kmod", "sudo",
)
OFFLINE_PACKAGES = ("heartbeat", "ufw", "firewalld")  # firewall tests install the last two
# trixie nodes run heartbeat only (the firewall tests use bookworm); net-tools is named
# because nothing else in that short list brings it.
OFFLINE_BY_RELEASE = {"bookworm": OFFLINE_PACKAGES, "trixie": ("heartbeat", "net-tools")}
IMAGE_VERSION = 1  # bump when the customisation below changes
PROBE_PORT = 80

# A tiny HTTP server that answers every request with the node's name. It needs only the
# modules python3-minimal ships (socket), so the node image stays small.
PROBE_SERVER = r'''#!/usr/bin/python3
"""hbdeploy lab probe: answer every HTTP request with this node's name."""
import socket
import threading

NAME = socket.gethostname().encode()
PORT = @PORT@


def answer(conn):
    with conn:
        conn.settimeout(5)
        try:
            conn.recv(4096)
            body = NAME + b"\n"
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", PORT))
server.listen(128)
while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
'''.replace("@PORT@", str(PROBE_PORT))

PROBE_UNIT = """[Unit]
Description=hbdeploy lab HTTP probe (answers with the node name)
After=network.target

[Service]
ExecStart=/usr/local/sbin/hbdeploy-probe
Restart=always

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = """# hbdeploy lab: root logs in with the lab key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""


def image_key(mirror: str, release: str = DEFAULT_RELEASE) -> str:
    """A short hash of everything the image is made of: rebuilt when any of it changes."""
    spec = {"suite": release, "packages": PACKAGES, "offline": OFFLINE_BY_RELEASE[release],
            "version": IMAGE_VERSION, "mirror": mirror, "probe": PROBE_SERVER,
            "unit": PROBE_UNIT, "sshd": SSHD_CONFIG}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def default_mirror() -> str:
    return os.environ.get("HBDEPLOY_LAB_MIRROR", "http://deb.debian.org/debian")


def image_release(root: Path) -> str:
    """The release a built image is of (images built before trixie was added: bookworm)."""
    try:
        marker = json.loads((root / ".hbdeploy-complete").read_text())
    except (OSError, ValueError):
        return ""
    return marker.get("release", DEFAULT_RELEASE)


def ensure_root(cache: Path, report: Report, mirror: str | None = None,
                release: str = DEFAULT_RELEASE) -> Path:
    """The cached root of ``release`` for the current package list, built first when
    missing; outdated images of the same release are removed."""
    if release not in RELEASES:
        raise LabError(f"release {release!r}: the lab boots {', '.join(RELEASES)}")
    mirror = mirror or default_mirror()
    root = cache / f"root-{image_key(mirror, release)}"
    if (root / ".hbdeploy-complete").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".build-lock").open("w") as lock:  # one build at a time (two labs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".hbdeploy-complete").is_file():  # built while this one waited
            return root
        return _build(cache, root, report, mirror, release)


def _build(cache: Path, root: Path, report: Report, mirror: str, release: str) -> Path:
    building = cache / f"{root.name}.building"
    if building.exists():
        _discard(building)  # left by a build that was killed
    report(f"building the node image {root.name} (debootstrap {release}, about a minute)")
    run_with_progress(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", release,
         str(building), mirror], "debootstrap", report)
    _customise(building, report, OFFLINE_BY_RELEASE[release])
    (building / ".hbdeploy-complete").write_text(
        json.dumps({"mirror": mirror, "release": release}) + "\n")
    building.rename(root)
    for old in cache.glob("root-*"):
        if (old != root and old.is_dir() and not old.name.endswith(".building")
                and image_release(old) == release):
            report(f"removing the outdated image {old.name}")
            shutil.rmtree(old, ignore_errors=True)
    return root


def _discard(building: Path) -> None:
    """Remove a killed build's folder: first what debootstrap had mounted in it (/proc,
    /sys), deepest first, which rmtree must not walk into."""
    inside = [p for p in reversed(mount_points()) if p.startswith(f"{building}/")]
    for point in inside:
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "-l", point], check=False)
    left = [p for p in mount_points() if p.startswith(f"{building}/")]
    if left:
        raise LabError(f"cannot remove the unfinished image {building}: {', '.join(left)} "
                       "still mounted there")
    try:
        shutil.rmtree(building)
    except OSError as exc:
        raise LabError(f"cannot remove the unfinished image {building}: {exc}") from None


def _customise(root: Path, report: Report, offline: tuple[str, ...]) -> None:
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    report(f"downloading {', '.join(offline)} and their dependencies into the apt cache")
    run(["chroot", str(root), "apt-get", "update", "-qq"], timeout=600)
    run(["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
         "-y", "-qq", "--download-only", *offline], timeout=1200)
    debs = list((root / "var/cache/apt/archives").glob("heartbeat_*.deb"))
    if not debs:
        raise LabError("the image build downloaded no heartbeat .deb")
    (root / "etc" / "resolv.conf").write_text("")  # nodes have no DNS: no route out
    (root / "etc" / "hostname").unlink(missing_ok=True)  # nspawn --hostname names the node
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()  # every node gets host keys of its own
    (root / "etc/ssh/sshd_config.d/hbdeploy-lab.conf").write_text(SSHD_CONFIG)
    probe = root / "usr/local/sbin/hbdeploy-probe"
    probe.write_text(PROBE_SERVER)
    probe.chmod(0o755)
    (root / "etc/systemd/system/hbdeploy-probe.service").write_text(PROBE_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "hbdeploy-probe.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/hbdeploy-probe.service")
    # Nothing in a node tries to reach the outside; apt keeps what it downloaded.
    (root / "etc/apt/apt.conf.d/90hbdeploy-lab").write_text(
        'APT::Keep-Downloaded-Packages "true";\nAcquire::Retries "0";\n')
