"""Hot spares: how often does a floating IP sit on two nodes at once? (A measurement, not a
test.) ``--design members``: haproxy3 a third member (heartbeat's own design); ``--design
spares`` (hbdeploy's): haproxy3 a spare outside the pair (docs/operations.md, "Hot spares").

    .venv/bin/python bench/hot_spares.py                    # 20 cuts + 20 kills, lab.yml
    .venv/bin/python bench/hot_spares.py --design spares    # the same, haproxy3 a spare
    .venv/bin/python bench/hot_spares.py --runs 5 --profile fast

A fresh 3-node lab, the profile's cluster file with haproxy3 added (as a member or a spare);
then ``--runs`` cuts of the node holding the floating IP (its link down for deadtime + 4 s,
then healed) and ``--runs`` ``kill -9`` of heartbeat's main process on the holder. An
observer reads every node's addresses from its network namespace every 100 ms
(outage.HolderWatch, not through heartbeat) for the whole of each fault and its repair,
and counts the samples in which two or more nodes had the floating IP. Writes
bench/hot_spares.json (bench/hot_spares-spares.json for --design spares) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import partitions  # bench/partitions.py, beside this script: its deploy and settle

from hbdeploy import config
from hbdeploy.lab import Lab
from hbdeploy.lab.outage import HolderWatch, cut_cycle, holders, kill_cycle

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"lab": ROOT / "examples" / "lab.yml", "fast": ROOT / "examples" / "lab-fast.yml"}
NODES = ["haproxy1", "haproxy2", "haproxy3"]
IP = "10.213.0.100"
SAMPLE_S = 0.1  # HolderWatch's interval


def three_nodes(profile: Path, design: str = "members") -> Path:
    """The profile's cluster file with haproxy3 as a third member, or as a spare (beside
    this script)."""
    out = ROOT / "bench" / f"hot-spares-{profile.stem}.yml"
    if design == "spares":
        text = profile.read_text() + "spares:\n  haproxy3: 10.213.0.13\n"
    else:
        text = profile.read_text().replace(
            "  haproxy2: 10.213.0.12\n", "  haproxy2: 10.213.0.12\n  haproxy3: 10.213.0.13\n")
    out.write_text(text)
    return out


def run(profile: str, runs: int, design: str = "members") -> dict:
    cluster_file = three_nodes(PROFILES[profile], design)
    members = NODES if design == "members" else NODES[:2]
    deadtime = config.load_cluster(cluster_file).timings.deadtime.ms / 1000
    lab = Lab(report=lambda m: print(f"lab: {m}", flush=True))
    lab.down()
    lab.up(nodes=3)
    partitions.deploy(lab, cluster_file, NODES)
    partitions.settle(lab, members, deadline=120)
    faults = []
    for kind in ("cut", "kill -9"):
        for i in range(runs):
            holder = (holders(IP, NODES) or ["haproxy1"])[0]
            with HolderWatch(lab, IP) as watch:
                if kind == "cut":
                    cycle = cut_cycle(lab, IP, members, holder, deadtime + 4,
                                      2 * deadtime + 3)
                else:
                    cycle = kill_cycle(lab, IP, members, holder, 2 * deadtime + 3)
                settled = partitions.settle(lab, members, deadline=120)
            double = [s for s in watch.samples if len(s) >= 2]
            faults.append({"fault": kind, "node": holder, "samples": len(watch.samples),
                           "two_holders": len(double),
                           "pairs": sorted({",".join(s) for s in double}),
                           "failover_s": cycle.failover, "whole_after_s": cycle.whole_after,
                           "settled": settled})
            print(f"{profile} {kind} {i + 1}/{runs} of {holder}: {len(double)} of "
                  f"{len(watch.samples)} samples with two holders {faults[-1]['pairs']}, "
                  f"settled {settled}", flush=True)
    lab.down()
    return {"profile": profile, "design": design,
            "cluster": str(cluster_file.relative_to(ROOT)), "faults": faults}


def table(results: list[dict]) -> str:
    rows = ["| profile | design | fault | faults | faults with two holders | two-holder "
            "samples (100 ms) of all | longest, s |", "|---|---|---|---|---|---|---|"]
    for result in results:
        for kind in ("cut", "kill -9"):
            got = [f for f in result["faults"] if f["fault"] == kind]
            if not got:
                continue
            rows.append(f"| {result['profile']} | {result.get('design', 'members')} | "
                        f"{kind} | {len(got)} | "
                        f"{sum(1 for f in got if f['two_holders'])} | "
                        f"{sum(f['two_holders'] for f in got)} of "
                        f"{sum(f['samples'] for f in got)} | "
                        f"{max(f['two_holders'] for f in got) * SAMPLE_S:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="cuts, and kills, per profile")
    parser.add_argument("--profile", choices=sorted(PROFILES), action="append")
    parser.add_argument("--design", choices=("members", "spares"), default="members")
    args = parser.parse_args()
    results = [run(p, args.runs, args.design) for p in args.profile or ["lab"]]
    out = ROOT / "bench" / ("hot_spares.json" if args.design == "members"
                            else "hot_spares-spares.json")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                               "machine": f"{platform.node()} {platform.machine()}",
                               "sample_s": SAMPLE_S, "results": results}, indent=1))
    print(table(results))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
