"""Each lab node's own control group tree, as each server has its own.

systemd-nspawn puts its container in ``<the cgroup nspawn runs in>/payload``: nodes booted
from one process would share one tree, and a unit's cgroup (``system.slice/ssh.service``)
would hold the processes of that unit on every node. The nodes' systemd then see each
other's processes: a unit whose process has exited stays "deactivating" while another
node's process of the same unit runs (seen in the lab; test_3_lab.py).
So each node's nspawn starts in a cgroup of its own, ``hbdeploy-lab/<machine name>``
under this process's, in every hierarchy systemd tracks processes with (cgroup2, and the
``name=systemd`` v1 hierarchy on a hybrid host). docs/lab.md, "Control groups".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .sh import LabError

TREE = "hbdeploy-lab"


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each tracking hierarchy: "cgroup2" and "name=systemd"."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            own["cgroup2"] = path
        elif controllers == "name=systemd":
            own["name=systemd"] = path
    return own


def _mounts() -> dict[str, Path]:
    """Where the tracking hierarchies are mounted, by the same keys as _own_paths."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point, kind, options = fields[1], fields[2], fields[3].split(",")
        if kind == "cgroup2":
            found.setdefault("cgroup2", Path(point))
        elif kind == "cgroup" and "name=systemd" in options:
            found.setdefault("name=systemd", Path(point))
    return found


def _roots() -> list[Path]:
    """The lab's cgroup folder (TREE, under this process's cgroup) in each tracking
    hierarchy this host has mounted."""
    own, mounts = _own_paths(), _mounts()
    return [mounts[key] / own[key].lstrip("/") / TREE
            for key in ("cgroup2", "name=systemd") if key in own and key in mounts]


def node_dirs(machine_name: str) -> list[Path]:
    """The node's cgroup directory in each tracking hierarchy this host has mounted."""
    return [root / machine_name for root in _roots()]


def procs_files(machine_name: str) -> list[Path]:
    """The node's cgroups made, and their ``cgroup.procs``: writing a PID there moves it in."""
    dirs = node_dirs(machine_name)
    for folder in dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"cannot make the node's cgroup {folder}: {exc.strerror}") from None
    return [folder / "cgroup.procs" for folder in dirs]


def _trees(prefix: str) -> list[Path]:
    """The node cgroups of machines named ``prefix-...``, in every tracking hierarchy."""
    out: list[Path] = []
    for root in _roots():
        with contextlib.suppress(OSError):
            out += [p for p in root.iterdir() if p.name.startswith(f"{prefix}-")]
    return out


def _rmtree(folder: Path) -> bool:
    """rmdir every cgroup under ``folder``, deepest first; whether none is left. One stays
    while a process is in it, a zombie included (its parent has not reaped it yet)."""
    for path, _, _ in os.walk(folder, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(path)
    return not folder.exists()


def remove(machine_name: str) -> bool:
    """Remove the node's cgroup trees (its processes killed); whether they are gone."""
    return all([_rmtree(folder) for folder in node_dirs(machine_name)])


def remove_all(prefix: str) -> bool:
    """Remove the cgroup trees of every node of the lab named by ``prefix``; whether they
    are gone."""
    return all([_rmtree(folder) for folder in _trees(prefix)])


def machines(prefix: str) -> set[str]:
    """The machine names of the lab named by ``prefix`` that have cgroups on the host."""
    return {p.name for p in _trees(prefix)}


def left(prefix: str) -> list[str]:
    """The cgroups of the lab named by ``prefix`` still on the host."""
    return sorted(str(p) for p in _trees(prefix))
