"""The lab as a whole: bring it up, take it down, report on it, break it on purpose."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import cgroups, network, rootfs
from .machine import Machine, mount_points, netns_pids, nspawn_pids
from .network import Addressing
from .sh import LabError, Report, check_requirements, poll, run

DEFAULT_SUBNET = "10.213.0.0/24"
MAX_NODES = 16
STATE_DIR = Path(os.environ.get("HBDEPLOY_LAB_DIR", "/var/lib/hbdeploy/lab"))
CACHE_DIR = Path(os.environ.get("HBDEPLOY_LAB_CACHE", "/var/cache/hbdeploy/lab"))
# The nodes' disks (their overlays' upper layers) are in RAM, one tmpfs per lab, this large
# at most: an installed node writes about 200 MiB. On the host's disk, 4 package installs
# at once spent 39 CPU-seconds where 2 spent 14, most of it in the kernel (ext4 without a
# journal scans recently deleted inodes for every file dpkg creates); separate servers
# share no disk and no kernel. docs/lab.md, "Disks".
DISKS_SIZE = "8g"


def node_name(index: int) -> str:
    return f"haproxy{index}"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    running: bool
    ssh: bool
    link_up: bool
    floating_ips: tuple[str, ...]


def _quiet(_: str) -> None:
    pass


def _all_pids() -> list[int]:
    """Every lab process: nspawn instances and whatever lives in a lab namespace."""
    pids = [pid for group in nspawn_pids().values() for pid in group]
    return pids + netns_pids(*network.lab_namespaces())


def _unreaped(pids: list[int]) -> list[int]:
    """Those of ``pids`` still in /proc (running or zombies); our own children are reaped."""
    left = []
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if Path(f"/proc/{pid}").exists():
            left.append(pid)
    return left


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Lab:
    """The lab on this machine; its state lives in ``state_dir``, its image in ``cache_dir``."""

    def __init__(self, state_dir: Path = STATE_DIR, cache_dir: Path = CACHE_DIR,
                 report: Report = _quiet) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.report = report

    # -- paths and state -----------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def ssh_config_path(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    @property
    def addressing(self) -> Addressing:
        return Addressing.parse(self._state().get("subnet", DEFAULT_SUBNET))

    def machines(self) -> list[Machine]:
        """The lab's nodes, as recorded by the last lab.up."""
        addressing = self.addressing
        return [Machine(name, i, addressing.node_ip(i), self.state_dir / "nodes" / name)
                for i, name in enumerate(self._state().get("nodes", []), start=1)]

    def machine(self, name: str) -> Machine:
        for machine in self.machines():
            if machine.name == name:
                return machine
        known = ", ".join(m.name for m in self.machines()) or "none: run hbdeploy lab.up"
        raise LabError(f"{name!r} is not a lab node (nodes: {known})")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- up / down -----------------------------------------------------------------------
    def up(self, nodes: int = 2, subnet: str | None = None,
           release: str | Sequence[str] = rootfs.DEFAULT_RELEASE) -> list[Machine]:
        """Make nodes haproxy1..N run and answer ssh; idempotent, and heals a killed run.

        ``release``: the Debian release of every node, or one per node (haproxy1 first) for
        a mixed lab; a node keeps the release it was first booted with."""
        check_requirements()
        if not 2 <= nodes <= MAX_NODES:
            raise LabError(f"--nodes {nodes}: the lab runs 2 to {MAX_NODES} nodes")
        releases = [release] * nodes if isinstance(release, str) else list(release)
        if len(releases) != nodes:
            raise LabError(f"{len(releases)} releases given for {nodes} nodes: give one "
                           "release, or one per node")
        with self._locked():
            state = self._state()
            wanted = Addressing.parse(subnet or state.get("subnet", DEFAULT_SUBNET))
            images = {r: rootfs.ensure_root(self.cache_dir, self.report, release=r).name
                      for r in dict.fromkeys(releases)}
            had = self._releases(state)
            changed = [f"{n} runs {had[n]}, not {r}" for n, r in
                       zip([node_name(i) for i in range(1, nodes + 1)], releases, strict=True)
                       if n in had and had[n] != r]
            if changed:
                raise LabError(f"{'; '.join(changed)}: a node keeps its release (hbdeploy "
                               "lab.down first to boot it with another)")
            known = {**state.get("images", {}), **({rootfs.DEFAULT_RELEASE: state["image"]}
                                                   if state.get("image") else {})}
            if state and (state.get("subnet") != str(wanted.subnet) or any(
                    known.get(r, images[r]) != images[r] for r in images)):
                self.report("the lab's subnet or image changed: starting it afresh")
                self._teardown()
                state, had = {}, {}
            self._clean_strays(state.get("nodes", []))
            names = list(state.get("nodes", []))
            for i in range(len(names) + 1, nodes + 1):
                names.append(node_name(i))
                had[node_name(i)] = releases[i - 1]
            self._save({"subnet": str(wanted.subnet), "nodes": names,
                        "images": {**state.get("images", {}), **images},
                        "releases": had})
            self._ensure_key()
            network.ensure_bridge(wanted)
            machines = self.machines()
            self._ensure_disks(machines)
            for machine in machines:
                self._power_on(machine, self._image(machine.name), wait=False)
            for machine in machines:
                machine.wait_ssh()
            self._write_ssh_files(machines)
            for machine in machines:
                self._check_ssh(machine)
            return machines

    @property
    def disks(self) -> Path:
        """Where the nodes' overlays live (a tmpfs while the lab is up)."""
        return self.state_dir / "nodes"

    def _ensure_disks(self, machines: list[Machine]) -> None:
        """Mount the lab's tmpfs for the nodes' disks, unless a node already has its disk
        elsewhere (a lab booted before the disks moved to RAM keeps them until lab.down)."""
        if str(self.disks) in mount_points() or any(m.mounted() or m.running()
                                                    for m in machines):
            return
        # what a lab left on the host (its disks there, or the host rebooted): nothing runs
        shutil.rmtree(self.disks, ignore_errors=True)
        self.disks.mkdir(parents=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={DISKS_SIZE},mode=0755", "hbdeploy-lab",
             str(self.disks)])

    def _releases(self, state: dict | None = None) -> dict[str, str]:
        """Each recorded node's release (labs recorded before releases: bookworm)."""
        state = self._state() if state is None else state
        recorded = state.get("releases", {})
        return {n: recorded.get(n, rootfs.DEFAULT_RELEASE) for n in state.get("nodes", [])}

    def release(self, name: str) -> str:
        """The Debian release node ``name`` runs."""
        return self._releases()[self.machine(name).name]

    def _image(self, name: str) -> Path:
        state = self._state()
        images = {rootfs.DEFAULT_RELEASE: state.get("image", ""), **state.get("images", {})}
        image = self.cache_dir / images.get(self._releases(state)[name], "")
        if not (image / ".hbdeploy-complete").is_file():
            raise LabError("the lab's image is gone: run hbdeploy lab.up")
        return image

    def down(self) -> None:
        """Stop every node and remove every namespace, link, mount and process of the lab."""
        with self._locked():
            self._teardown()

    def _teardown(self) -> None:
        if _all_pids():
            self.report("powering off the nodes")
        self._stop_all()
        for point in self._lab_mounts():
            run(["umount", point], check=False)
            if point in mount_points():
                run(["umount", "-l", point], check=False)
        network.remove_all()
        shutil.rmtree(self.disks, ignore_errors=True)
        for path in (self.state_file, self.ssh_config_path, self.known_hosts_path):
            path.unlink(missing_ok=True)

    def _stop_all(self, deadline: float = 20) -> None:
        """Pull every node's plug: their disks are thrown away next, so a clean power-off
        would only cost time. The container processes go first, then nspawn."""
        nspawn = [pid for group in nspawn_pids().values() for pid in group]
        _signal_all(netns_pids(*network.lab_namespaces()), signal.SIGKILL)
        _signal_all(nspawn, signal.SIGKILL)
        # Gone means reaped too: a killed nspawn stays a zombie ("<defunct>", in ps and
        # pgrep) until its parent collects it — this process when it booted the node.
        poll("lab processes gone", lambda: not _all_pids() and not _unreaped(nspawn),
             deadline)
        poll("lab cgroups removed", lambda: cgroups.remove_all(network.PREFIX), deadline)

    def _lab_mounts(self) -> list[str]:
        """The nodes' root overlays, then the tmpfs under them (the order to unmount)."""
        prefix = str(self.disks) + "/"
        return [p for p in reversed(mount_points())
                if p.startswith(prefix) or p == str(self.disks)]

    def _clean_strays(self, names: list[str]) -> None:
        """Remove what a killed run left that the recorded lab does not own."""
        known = {f"{network.PREFIX}-{n}" for n in names}
        for machine_name, pids in nspawn_pids().items():
            if machine_name not in known:
                self.report(f"stopping a stray node {machine_name}")
                _signal_all(pids + netns_pids(machine_name), signal.SIGKILL)
        strays = [ns for ns in network.lab_namespaces()
                  if ns != network.BRIDGE_NS and ns not in known]
        _signal_all(netns_pids(*strays), signal.SIGKILL)
        poll("stray nodes gone", lambda: not netns_pids(*strays) and not (
            set(nspawn_pids()) - known), 20)
        for ns in strays:
            run(["ip", "netns", "del", ns], check=False)
        stray_cgroups = sorted(cgroups.machines(network.PREFIX) - known)
        poll("stray nodes' cgroups removed",
             lambda: all([cgroups.remove(m) for m in stray_cgroups]), 20)
        owned = {str(self.disks / n / "root") for n in names} | {str(self.disks)}
        for point in self._lab_mounts():
            if point not in owned:
                run(["umount", "-l", point], check=False)

    # -- power switches --------------------------------------------------------------------
    def _power_on(self, machine: Machine, image: Path, wait: bool = True) -> None:
        if machine.running():
            return
        self.report(f"booting {machine.name} ({machine.ip})")
        network.ensure_node_link(machine.name, machine.index, self.addressing)
        machine.mount(image)
        machine.prepare(self.key_file.with_suffix(".pub").read_text())
        machine.boot()
        if wait:
            machine.wait_ssh()

    def start(self, name: str) -> None:
        """Boot a node again with the state it had (its overlay is kept across kill)."""
        check_requirements()
        with self._locked():
            self._power_on(self.machine(name), self._image(name))

    def kill(self, name: str) -> None:
        """Hard power-off of one node, as pulling its plug: its processes killed, and its
        network interface emptied of every address but its own, as a machine that boots
        again has (the namespace, which the lab owns, outlives the node: a floating IP
        left in it would go on answering ARP and ping for a dead node)."""
        machine = self.machine(name)
        machine.kill()
        network.flush_extra_addresses(machine.name, machine.ip)

    def cut(self, name: str) -> None:
        """Take the node's link down: it keeps running but hears and reaches nobody."""
        network.set_port(self.machine(name).index, up=False)

    def heal(self, name: str) -> None:
        network.set_port(self.machine(name).index, up=True)

    # -- reporting ------------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        out = []
        for m in self.machines():
            ns = network.node_ns(m.name)
            addresses = network.addresses(ns) if ns in network.netns_list() else []
            running = m.running()
            out.append(NodeStatus(
                m.name, m.ip, running, running and m.ssh_port_open(),
                network.port_is_up(m.index),
                tuple(a for a in addresses if a != m.ip) if running else ()))
        return out

    def leftovers(self) -> list[str]:
        """Anything of the lab still on the host: namespaces, links, mounts, processes."""
        items = [f"netns {ns}" for ns in sorted(network.lab_namespaces())]
        items += [f"link {link}" for link in sorted(network.host_links())]
        items += [f"mount {point}" for point in self._lab_mounts()]
        items += [f"process {name} {pids}" for name, pids in sorted(nspawn_pids().items())]
        items += [f"process {pid} in a lab namespace" for pid in
                  netns_pids(*network.lab_namespaces())]
        items += [f"cgroup {path}" for path in cgroups.left(network.PREFIX)]
        return items

    # -- ssh ---------------------------------------------------------------------------------
    def _ensure_key(self) -> None:
        if not self.key_file.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hbdeploy-lab",
                 "-f", str(self.key_file)])

    def _write_ssh_files(self, machines: list[Machine]) -> None:
        known = [f"{m.name},{m.ip} {m.host_public_key()}\n" for m in machines]
        self.known_hosts_path.write_text("".join(known))
        blocks = ["# hbdeploy lab: written by `hbdeploy lab.up`; host keys are checked.\n"]
        for m in machines:
            blocks.append(
                f"\nHost {m.name} {m.ip}\n"
                f"    HostName {m.ip}\n"
                "    User root\n"
                f"    IdentityFile {self.key_file}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts_path}\n"
                "    StrictHostKeyChecking yes\n"
                "    ConnectTimeout 5\n")
        self.ssh_config_path.write_text("".join(blocks))

    def ssh_command(self, name: str, *command: str) -> list[str]:
        """An ssh command line reaching ``name`` with the lab's config (host key checked)."""
        return ["ssh", "-F", str(self.ssh_config_path), "-o", "BatchMode=yes", name, *command]

    def _check_ssh(self, machine: Machine) -> None:
        result = run(self.ssh_command(machine.name, "uname", "-n"), check=False, timeout=30)
        if result.returncode != 0 or result.stdout.strip() != machine.name:
            raise LabError(f"{machine.name}: ssh with the lab key failed: "
                           f"{(result.stderr or result.stdout).strip()[:200]}")
