"""hbdeploy against an Ansible playbook doing the same work, on the lab (bench/run.py).

Cold: bare nodes (a fresh lab) to a running cluster. No change: the cluster already right,
the two tools alternating. Wall time of the whole process, as a user sees it; hbdeploy's
remote commands per host from its recap (counted by the tool, not estimated); its peak
memory (max RSS, /usr/bin/time).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hbdeploy import validate
from hbdeploy.lab import Lab
from hbdeploy.render import render_node
from hbdeploy.source import read

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = ROOT / "bench" / "ansible"
ANSIBLE_VENV = ROOT / "bench" / ".ansible-venv"
ANSIBLE_CORE = "ansible-core==2.19.14"
TIME = "/usr/bin/time"


@dataclass
class Figures:
    """Seconds (or MiB, or counts) per figure name, every repetition kept."""

    values: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # section -> why it failed

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def summary(self, name: str) -> tuple[float, float, float]:
        v = self.values[name]
        return statistics.median(v), min(v), max(v)


def cluster_file(work: Path, nodes: int) -> Path:
    """examples/lab.yml with haproxy3.. added up to ``nodes``."""
    text = (ROOT / "examples" / "lab.yml").read_text()
    extra = "".join(f"  haproxy{i}: 10.213.0.{10 + i}\n" for i in range(3, nodes + 1))
    text = text.replace("  haproxy2: 10.213.0.12\n", "  haproxy2: 10.213.0.12\n" + extra)
    path = work / f"lab-{nodes}.yml"
    path.write_text(text)
    return path


def hbdeploy_argv(lab: Lab, cluster_path: Path, nodes: int) -> list[str]:
    """`hbdeploy deploy` of ``cluster_path`` on haproxy1..``nodes`` of the lab."""
    hosts = ",".join(f"haproxy{i}" for i in range(1, nodes + 1))
    return [str(Path(sys.executable).parent / "hbdeploy"), "-S", str(lab.ssh_config_path),
            "-H", hosts, "deploy", "--cluster", str(cluster_path)]


def ensure_ansible(say: Callable[[str], None]) -> Path:
    """ansible-core from PyPI in its own venv (bench/.ansible-venv); its ansible-playbook."""
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not exe.exists():
        say(f"installing {ANSIBLE_CORE} into {ANSIBLE_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", ANSIBLE_CORE],
                       check=True)
    return exe


def ansible_setup(work: Path, lab: Lab, cluster_path: Path) -> Path:
    """Rendered files per host, inventory and ansible.cfg in ``work``; returns the cfg."""
    cluster = validate.load(read(cluster_path), environ=dict(os.environ))
    files_dir = work / "files"
    lines = ["[cluster]"]
    for name in cluster.node_names:
        (files_dir / name).mkdir(parents=True, exist_ok=True)
        for fname, rendered in render_node(cluster, name).items():
            (files_dir / name / fname).write_text(rendered.content)
        peers = [n.ip for n in cluster.nodes if n.name != name]
        lines.append(f"{name} peers={','.join(peers)}")
    lines += ["", "[cluster:vars]", f"files_dir={files_dir}",
              f"udpport={cluster.udpport}"]
    inventory = work / "inventory.ini"
    inventory.write_text("\n".join(lines) + "\n")
    cfg = (ANSIBLE_DIR / "ansible.cfg.in").read_text()
    cfg = (cfg.replace("@INVENTORY@", str(inventory))
           .replace("@SSH_CONFIG@", str(lab.ssh_config_path)).replace("@WORK@", str(work)))
    path = work / "ansible.cfg"
    path.write_text(cfg)
    (work / "cp").mkdir(exist_ok=True)
    return path


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str, float]:
    """(wall seconds, stdout, peak RSS MiB) of one run; fails loudly."""
    t = time.monotonic()
    result = subprocess.run([TIME, "-f", "maxrss %M", *argv], capture_output=True, text=True,
                            env=env, check=False)
    wall = time.monotonic() - t
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}\n"
                           f"{result.stderr}")
    rss = re.findall(r"maxrss (\d+)", result.stderr)
    return wall, result.stdout, int(rss[-1]) / 1024 if rss else 0.0


def remote_commands(stdout: str) -> list[int]:
    """Per-host counts from the recap line "remote commands: haproxy1 1, haproxy2 1"."""
    line = next((x for x in stdout.splitlines() if x.startswith("remote commands:")), "")
    return [int(n) for n in re.findall(r" (\d+)(?:,|$)", line)]


def compare(figures: Figures, lab: Lab, work: Path, nodes: int, reps: int, cold_reps: int,
            say: Callable[[str], None]) -> None:
    """Cold and no-change deploys of ``nodes`` nodes, both tools."""
    playbook_exe = ensure_ansible(say)
    path = cluster_file(work, nodes)
    hb_argv = hbdeploy_argv(lab, path, nodes)
    (work / f"ansible-{nodes}").mkdir(parents=True, exist_ok=True)
    cfg = ansible_setup(work / f"ansible-{nodes}", lab, path)
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg))
    pb_argv = [str(playbook_exe), str(ANSIBLE_DIR / "playbook.yml")]
    for i in range(cold_reps):
        for tool, argv, run_env in (("hbdeploy", hb_argv, None), ("ansible", pb_argv, env)):
            lab.down()
            lab.up(nodes=nodes)
            for sock in (cfg.parent / "cp").iterdir():  # connections to the previous lab
                sock.unlink()
            wall, out, _ = timed(argv, run_env)
            figures.add(f"cold {nodes} nodes, {tool}", wall)
            say(f"cold {nodes} nodes {tool} {i + 1}/{cold_reps}: {wall:.2f}s")
            for line in out.splitlines():
                if line.startswith(("repaired:", "remote commands:")):
                    say(f"  {line}")
    if not cold_reps:  # no cold run booted a lab of this size: a fresh one, deployed below
        lab.down()
        lab.up(nodes=nodes)
    # The cluster is now Ansible's: hbdeploy's first run adds its supervision and firewall
    # chain, Ansible's first adds its INPUT rules; from then on neither changes anything.
    timed(hb_argv)
    timed(pb_argv, env)
    for i in range(reps):
        wall, _ = hbdeploy_no_change(figures, hb_argv, nodes)
        awall, aout, _ = timed(pb_argv, env)
        if re.search(r"changed=[1-9]", aout) or "changed=0" not in aout:
            raise RuntimeError(f"ansible's no-change run changed something:\n{aout}")
        figures.add(f"no-change {nodes} nodes, ansible", awall)
        say(f"no-change {nodes} nodes {i + 1}/{reps}: hbdeploy {wall:.2f}s, "
            f"ansible {awall:.2f}s")


def paired_no_change(figures: Figures, lab: Lab, work: Path, reps: int,
                     say: Callable[[str], None]) -> None:
    """A 2-node and a 4-node cluster side by side on one 6-node lab (haproxy1-2 serving
    10.213.0.100, haproxy3-6 serving 10.213.0.101), their no-change deploys alternating:
    both meet the same machine at the same moments, so the 4/2 ratio of each pair does not
    carry the drift between the compare() sections (one lab size after the other)."""
    lab.down()
    lab.up(nodes=6)
    two = work / "paired-2.yml"
    two.write_text((ROOT / "examples" / "lab.yml").read_text())
    text = two.read_text()
    four = work / "paired-4.yml"
    four.write_text(
        text.replace("  haproxy1: 10.213.0.11\n  haproxy2: 10.213.0.12\n",
                     "".join(f"  haproxy{i}: 10.213.0.{10 + i}\n" for i in range(3, 7)))
        .replace("  haproxy1: IPaddr::10.213.0.100/24/eth0",
                 "  haproxy3: IPaddr::10.213.0.101/24/eth0"))
    bin_ = str(Path(sys.executable).parent / "hbdeploy")
    argv = {n: [bin_, "-S", str(lab.ssh_config_path), "-H", hosts, "deploy", "--cluster",
                str(path)]
            for n, hosts, path in ((2, "haproxy1,haproxy2", two),
                                   (4, "haproxy3,haproxy4,haproxy5,haproxy6", four))}
    for n in (2, 4):
        timed(argv[n])  # cold, not counted
    for i in range(reps):
        walls = {}
        for n in (2, 4):
            wall, out, _ = timed(argv[n])
            if "unchanged: nothing to do" not in out:
                raise RuntimeError(f"hbdeploy's no-change run changed something:\n{out}")
            walls[n] = wall
            figures.add(f"no-change {n} nodes, paired on a 6-node lab, hbdeploy (s)", wall)
        figures.add("no-change 4 nodes / 2 nodes, paired (ratio)", walls[4] / walls[2])
        say(f"paired no-change {i + 1}/{reps}: 2 nodes {walls[2]:.2f}s, 4 nodes "
            f"{walls[4]:.2f}s, {walls[4] / walls[2]:.2f}x")


def no_change_at_scale(figures: Figures, lab: Lab, work: Path, nodes: int,
                       say: Callable[[str], None]) -> None:
    """A lab of ``nodes`` real nodes, one cold deploy, then 3 no-change deploys: their wall
    time and hbdeploy's peak memory (max RSS)."""
    argv = hbdeploy_argv(lab, cluster_file(work, nodes), nodes)
    lab.down()
    lab.up(nodes=nodes)
    wall, _, rss = timed(argv)
    figures.add(f"cold {nodes} nodes, hbdeploy", wall)
    figures.add(f"peak memory cold {nodes} nodes, hbdeploy (MiB)", rss)
    say(f"cold {nodes} nodes: {wall:.2f}s, {rss:.1f} MiB")
    for i in range(3):
        wall, rss = hbdeploy_no_change(figures, argv, nodes)
        say(f"no-change {nodes} nodes {i + 1}/3: {wall:.2f}s, {rss:.1f} MiB")


def hbdeploy_no_change(figures: Figures, argv: list[str], nodes: int) -> tuple[float, float]:
    """One no-change hbdeploy run (an error if it changed anything): its wall time, peak
    memory and remote commands per host go to ``figures``; returns (wall, MiB)."""
    wall, out, rss = timed(argv)
    if "unchanged: nothing to do" not in out:
        raise RuntimeError(f"hbdeploy's no-change run changed something:\n{out}")
    figures.add(f"no-change {nodes} nodes, hbdeploy", wall)
    figures.add(f"peak memory {nodes} nodes, hbdeploy (MiB)", rss)
    for count in remote_commands(out):
        figures.add(f"remote commands per host, no-change {nodes} nodes", count)
    return wall, rss
