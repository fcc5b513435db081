"""The benchmark's entry point (not a test): speed and memory of hbdeploy, and hbdeploy
against an Ansible playbook doing the same work (bench/compare.py, bench/ansible/).

    .venv/bin/python bench/run.py              # everything; brings the lab up (root)
    .venv/bin/python bench/run.py --offline    # validation + rendering only
    .venv/bin/python bench/run.py --reps 10 --cold-reps 2 --nodes 2 4 --ops-reps 5 \
        --failover-reps 5 --memory-nodes 16

Writes bench/results.md and bench/results.json (machine, date, median and min-max of every
figure, ratios). Partitions and crashes have their own, longer bench: bench/partitions.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

from compare import Figures, compare, no_change_at_scale, paired_no_change
from operations import measure_operations

from hbdeploy import validate
from hbdeploy.render import render_node
from hbdeploy.source import from_document

ROOT = Path(__file__).resolve().parents[1]


def cluster_doc(n: int) -> dict:
    return {"nodes": {f"lb{i}": f"10.50.0.{i + 1}" for i in range(n)},
            "resources": {"lb0": ["10.50.0.200", "haproxy"]}, "password": "bench-password"}


def bench_render(n: int, rounds: int = 20) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    for _ in range(rounds):
        c = validate.load(from_document(cluster_doc(n), None), environ={})  # type: ignore[arg-type]
        for node in c.node_names:
            render_node(c, node)
    elapsed = (time.perf_counter() - start) / rounds
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return elapsed * 1000, peak


def failovers(figures: Figures, profile: str, reps: int, say) -> None:
    """Cuts of the holder with bench/partitions.py's cycle (HTTP probe every 50 ms)."""
    from partitions import PROFILES, run_profile

    name = PROFILES[profile].name
    result = run_profile(profile, reps, supervised=True, kills=False)
    for cycle in result["cycles"]:
        if cycle["failover"] is not None:
            figures.add(f"failover after a cut of the holder, {name} (s)", cycle["failover"])
        figures.add(f"unanswered after the heal, {name} (s)", cycle["unanswered_repair"])
    say(f"failover {name}: {len(result['cycles'])} cuts")


def write_results(figures: Figures, args: argparse.Namespace) -> None:
    """bench/results.json (every value) and bench/results.md (median, min-max, ratios)."""
    machine = (f"{platform.node()}: {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
               f"{platform.platform()}")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (ROOT / "bench" / "results.json").write_text(json.dumps(
        {"machine": machine, "date": date, "args": vars(args), "figures": figures.values,
         "failed": figures.failed},
        indent=2) + "\n")
    rows = ["| figure | median | min-max | runs |", "|---|---|---|---|"]
    for name in figures.values:
        med, lo, hi = figures.summary(name)
        rows.append(f"| {name} | {med:.2f} | {lo:.2f}-{hi:.2f} | {len(figures.values[name])} |")
    ratios = []
    for name in figures.values:
        if name.endswith(", hbdeploy") and name.replace("hbdeploy", "ansible") in figures.values:
            other = name.replace("hbdeploy", "ansible")
            ratio = figures.summary(other)[0] / figures.summary(name)[0]
            ratios.append(f"| {name.removesuffix(', hbdeploy')} | {ratio:.1f}x |")
    text = [f"# Benchmark results\n\n{machine}; {date}; `bench/run.py` "
            f"--reps {args.reps} --cold-reps {args.cold_reps}.\n",
            "Times in seconds (wall time of the whole process) unless the name says "
            "otherwise.\n", *rows]
    if ratios:
        text += ["", "| ansible-playbook time / hbdeploy time (medians) | ratio |",
                 "|---|---|", *ratios]
    if figures.failed:
        text += ["", "Not measured (the section failed):", "",
                 *(f"- {name}: {why}" for name, why in figures.failed.items())]
    (ROOT / "bench" / "results.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--offline", action="store_true", help="rendering figures only")
    parser.add_argument("--reps", type=int, default=10, help="no-change runs per tool")
    parser.add_argument("--cold-reps", type=int, default=2, help="cold deploys per tool")
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--ops-reps", type=int, default=5,
                        help="standby/takeover and rolling updates (bench/operations.py)")
    parser.add_argument("--failover-reps", type=int, default=5,
                        help="cuts of the holder per profile (bench/partitions.py)")
    parser.add_argument("--paired-reps", type=int, default=20,
                        help="alternations of a 2-node and a 4-node cluster's no-change "
                             "deploys on one 6-node lab (0: skip)")
    parser.add_argument("--memory-nodes", type=int, default=16,
                        help="a lab of this many nodes for the peak memory of a no-change "
                             "deploy (0: skip)")
    args = parser.parse_args()
    figures = Figures()
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    for n in (2, 4, 16, 64):
        ms, mib = bench_render(n)
        figures.add(f"validate + render {n} nodes (ms)", ms)
        figures.add(f"validate + render {n} nodes, peak (MiB)", mib)
        say(f"validate + render {n:>2} nodes: {ms:7.2f} ms, peak {mib:5.1f} MiB")
    if not args.offline:
        from hbdeploy.lab import Lab

        lab = Lab(report=lambda m: say(f"lab: {m}"))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                for nodes in args.nodes:
                    compare(figures, lab, Path(tmp), nodes, args.reps, args.cold_reps, say)
                sections = []
                if args.paired_reps:
                    sections.append(("paired", lambda: paired_no_change(
                        figures, lab, Path(tmp), args.paired_reps, say)))
                if args.ops_reps:
                    sections.append(("operations", lambda: measure_operations(
                        figures, lab, Path(tmp), args.ops_reps, say)))
                for profile in ("lab", "fast") if args.failover_reps else ():
                    sections.append((f"failover {profile}", lambda p=profile: failovers(
                        figures, p, args.failover_reps, say)))
                if args.memory_nodes:
                    sections.append((f"{args.memory_nodes} nodes", lambda: no_change_at_scale(
                        figures, lab, Path(tmp), args.memory_nodes, say)))
                for name, section in sections:  # one that fails is reported, not fatal
                    try:
                        section()
                    except Exception as exc:
                        figures.failed[name] = str(exc).splitlines()[0][:300]
                        say(f"{name}: FAILED: {exc}")
            finally:
                lab.down()
    write_results(figures, args)
