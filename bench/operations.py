"""Day-two operations timed the way a user sees them (bench/run.py; not a test): the floating
IP's unanswered time during a graceful standby and takeover, a rolling update (warntime,
a reload, and a new password, rotated in three passes) and one that restarts (haresources:
a second floating IP added, then removed). An HTTP probe of the floating IP from the lab
host every 20 ms (hbdeploy/lab/outage.py); unanswered = each run of failed probes from its
first failure to the next answer, summed over the command's whole run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from compare import Figures

from hbdeploy.lab import Lab
from hbdeploy.lab.outage import HttpProbe, heartbeat_whole, holders, http_answer, wait_for

ROOT = Path(__file__).resolve().parents[1]
LAB_CLUSTER = ROOT / "examples" / "lab.yml"
NODES = ["haproxy1", "haproxy2"]
IP = "10.213.0.100"
INTERVAL = 0.02


def variants(work: Path) -> dict[str, Path]:
    """examples/lab.yml with a new password (and warntime), and with a second floating IP."""
    text = LAB_CLUSTER.read_text()
    paths = {}
    for name, old, new in (
            ("password", "lab-only-not-a-secret", "bench-rotated-password"),
            ("two-ips", "haproxy1: IPaddr::10.213.0.100/24/eth0",
             "haproxy1: [IPaddr::10.213.0.100/24/eth0, IPaddr::10.213.0.101/24/eth0]")):
        assert old in text
        paths[name] = work / f"ops-{name}.yml"
        paths[name].write_text(text.replace(old, new))
    return paths


def hbdeploy(lab: Lab, *args: str, hosts: bool = True) -> str:
    exe = str(Path(sys.executable).parent / "hbdeploy")
    argv = [exe, "-S", str(lab.ssh_config_path), *(["-H", ",".join(NODES)] if hosts else []),
            *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def settled(lab: Lab) -> None:
    """Every node whole, the IP held once, by haproxy1, and answering."""
    if wait_for(lambda: heartbeat_whole(lab, NODES) and holders(IP, NODES) == ["haproxy1"]
                and http_answer(IP) == "haproxy1", 90, interval=0.5) is None:
        raise RuntimeError("the cluster did not settle with haproxy1 serving within 90 s")


def timed(figures: Figures, name: str, run: Callable[[], object]) -> float:
    """Run ``run`` under the HTTP probe; the IP's unanswered seconds go to ``name``."""
    with HttpProbe(IP, interval=INTERVAL, timeout=0.1) as probe:
        time.sleep(0.3)
        start = time.monotonic()
        run()
        end = time.monotonic()
    figures.add(name, probe.unanswered(start, end))
    return figures.values[name][-1]


def measure_operations(figures: Figures, lab: Lab, work: Path, reps: int,
                       say: Callable[[str], None]) -> None:
    """Standby, takeover and both kinds of rolling update, ``reps`` times each."""
    paths = variants(work)
    lab.down()
    lab.up(nodes=2)
    cluster = ["--cluster", str(LAB_CLUSTER)]
    hbdeploy(lab, "deploy", *cluster)
    settled(lab)
    for i in range(reps):
        standby = timed(figures, "standby, unanswered (s)",
                        lambda: hbdeploy(lab, "standby", "haproxy1", *cluster, hosts=False))
        takeover = timed(figures, "takeover, unanswered (s)",
                         lambda: hbdeploy(lab, "takeover", "haproxy1", *cluster, hosts=False))
        settled(lab)
        reload = timed(figures, "rolling update, new password (rotation) and warntime "
                       "(reload), unanswered (s)",
                       lambda: hbdeploy(lab, "deploy", "--cluster", str(paths["password"])))
        hbdeploy(lab, "deploy", *cluster)  # the password back (a rotation), a reload
        settled(lab)
        add = timed(figures, "rolling update, haresources +1 IP (restart), unanswered (s)",
                    lambda: hbdeploy(lab, "deploy", "--cluster", str(paths["two-ips"])))
        settled(lab)
        remove = timed(figures, "rolling update, haresources -1 IP (restart), unanswered (s)",
                       lambda: hbdeploy(lab, "deploy", *cluster))
        settled(lab)
        say(f"operations {i + 1}/{reps}: unanswered standby {standby:.2f}s, takeover "
            f"{takeover:.2f}s, password reload {reload:.2f}s, haresources +1 IP {add:.2f}s, "
            f"-1 IP {remove:.2f}s")
