"""Partitions and crashes in the lab, timed the way a user sees them (not a test).

    .venv/bin/python bench/partitions.py                   # examples/lab.yml and lab-fast.yml
    .venv/bin/python bench/partitions.py --runs 3 --profile lab
    .venv/bin/python bench/partitions.py --no-supervision --out partitions-alone.json
    .venv/bin/python bench/partitions.py --profile lab --cut-extra 0.5 --no-kill \
        --out partitions-window.json     # heals right after both sides declared the other dead

For each profile: a fresh 2-node lab, a deploy, then ``--runs`` cuts of the node holding
the floating IP (its link down for deadtime + 4 s, then healed) and ``--runs`` ``kill -9``
of heartbeat's main process, alternating the node. An HTTP probe of the floating IP from
this machine every 50 ms (hbdeploy/lab/outage.py) gives: failover (link down to the first
answer from the spare), unanswered after the heal (until the cluster has been whole for
2 x deadtime + 3 s), and whether heartbeat ran again on every node with each peer active
(within 90 s). Writes bench/partitions.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from hbdeploy import config
from hbdeploy.lab import Lab
from hbdeploy.lab.outage import (
    PROBE_INTERVAL,
    Cycle,
    cut_cycle,
    holders,
    kill_cycle,
    median_max,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"lab": ROOT / "examples" / "lab.yml", "fast": ROOT / "examples" / "lab-fast.yml",
            "lab-failback-off": ROOT / "bench" / "lab-failback-off.yml",
            "lab-keepalive-500ms": ROOT / "bench" / "lab-keepalive-500ms.yml",
            "lab-keepalive-200ms": ROOT / "bench" / "lab-keepalive-200ms.yml"}
# examples/lab.yml with one line changed, written beside this script when used.
VARIANTS = {"lab-failback-off": ("auto_failback: on", "auto_failback: off"),
            "lab-keepalive-500ms": ("keepalive: 1", "keepalive: 500ms"),
            "lab-keepalive-200ms": ("keepalive: 1", "keepalive: 200ms")}
NODES = ["haproxy1", "haproxy2"]
IP = "10.213.0.100"
UNSUPERVISE = ("systemctl disable --now hbdeploy-guard >/dev/null 2>&1; rm -f "
               "/etc/systemd/system/heartbeat.service.d/hbdeploy.conf; systemctl daemon-reload")


def deploy(lab: Lab, cluster: Path, nodes: list[str] = NODES) -> None:
    exe = str(Path(sys.executable).parent / "hbdeploy")
    result = subprocess.run([exe, "-S", str(lab.ssh_config_path), "-H", ",".join(nodes),
                             "deploy", "--cluster", str(cluster)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"deploy failed:\n{result.stdout}{result.stderr}")


def write_variant(name: str) -> None:
    """examples/lab.yml with the variant's line changed (written beside this script)."""
    old, new = VARIANTS[name]
    text = PROFILES["lab"].read_text()
    assert old in text, old
    PROFILES[name].write_text(text.replace(old, new))


def run_profile(name: str, runs: int, supervised: bool, cut_extra: float = 4,
                kills: bool = True) -> dict:
    if name in VARIANTS:
        write_variant(name)
    cluster = config.load_cluster(PROFILES[name])
    deadtime = cluster.timings.deadtime.ms / 1000
    lab = Lab(report=lambda m: print(f"lab: {m}", flush=True))
    lab.down()
    lab.up(nodes=2)
    deploy(lab, PROFILES[name])
    if not supervised:
        for node in NODES:
            subprocess.run(lab.ssh_command(node, UNSUPERVISE), check=True,
                           capture_output=True)
    cycles: list[Cycle] = []
    for i in range(runs):
        holder = (holders(IP, NODES) or ["haproxy1"])[0]
        cycle = cut_cycle(lab, IP, NODES, holder, deadtime + cut_extra, 2 * deadtime + 3)
        cycles.append(cycle)
        print(f"{name} cut {i + 1}/{runs} of {holder}: failover {cycle.failover}, "
              f"after the heal unanswered {cycle.unanswered_repair:.2f}s, whole after "
              f"{cycle.whole_after}", flush=True)
        settle(lab)
    for i in range(runs if kills else 0):
        node = NODES[i % 2]
        cycle = kill_cycle(lab, IP, NODES, node, 2 * deadtime + 3)
        cycles.append(cycle)
        print(f"{name} kill -9 {i + 1}/{runs} on {node}: unanswered "
              f"{cycle.unanswered_repair:.2f}s, whole after {cycle.whole_after}", flush=True)
        settle(lab)
    lab.down()
    return {"profile": name, "cluster": str(PROFILES[name].relative_to(ROOT)),
            "supervised": supervised, "cut_s": deadtime + cut_extra,
            "cycles": [dataclasses.asdict(c) for c in cycles]}


def settle(lab: Lab, nodes: list[str] = NODES, deadline: float = 90) -> bool:
    """Before the next fault: every node whole, the IP held once and answering (a late
    repair would blur the next figure). Whether that came within ``deadline`` s."""
    from hbdeploy.lab.outage import heartbeat_whole, http_answer
    return wait_for(lambda: heartbeat_whole(lab, nodes) and len(holders(IP, nodes)) == 1
                    and http_answer(IP) is not None, deadline, interval=0.5) is not None


def table(results: list[dict]) -> str:
    rows = ["| profile | fault | runs | failover s (median / max) | unanswered after the "
            "repair s (median / max) | heal <= 3 s | heartbeat on every node again |",
            "|---|---|---|---|---|---|---|"]
    for result in results:
        label = (result["profile"] + ("" if result["supervised"] else " (heartbeat alone)")
                 + f", cut {result['cut_s']:g} s")
        for fault in ("cut", "kill -9"):
            cycles = [c for c in result["cycles"] if c["fault"] == fault]
            if not cycles:
                continue
            failovers = [c["failover"] for c in cycles if c["failover"] is not None]
            repair = [c["unanswered_repair"] for c in cycles]
            whole = sum(1 for c in cycles if c["whole_after"] is not None)
            rows.append(f"| {label} | {fault} | {len(cycles)} | "
                        f"{median_max(failovers) if fault == 'cut' else '-'} | "
                        f"{median_max(repair)} | {sum(1 for r in repair if r <= 3)}/"
                        f"{len(cycles)} | {whole}/{len(cycles)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", choices=sorted(PROFILES), action="append")
    parser.add_argument("--no-supervision", action="store_true",
                        help="remove hbdeploy's drop-in and guard after the deploy")
    parser.add_argument("--cut-extra", type=float, default=4,
                        help="seconds a cut lasts beyond deadtime (default 4)")
    parser.add_argument("--no-kill", action="store_true", help="cuts only")
    parser.add_argument("--out", default="partitions.json", help="file name under bench/")
    args = parser.parse_args()
    results = [run_profile(p, args.runs, not args.no_supervision, args.cut_extra,
                           not args.no_kill)
               for p in args.profile or ["lab", "fast"]]
    out = ROOT / "bench" / args.out
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                               "machine": f"{platform.node()} {platform.machine()}, "
                                          f"{_cores()} cores",
                               "resolution_s": PROBE_INTERVAL, "results": results}, indent=1))
    print(table(results))
    print(f"written: {out}")


def _cores() -> int:
    import os
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
