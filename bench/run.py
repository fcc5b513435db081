"""Benchmarks (not tests): speed and memory goals of hbdeploy.

    .venv/bin/python bench/run.py          # validation + rendering, offline
    .venv/bin/python bench/run.py --lab    # also: deploy from bare, no-op rerun, failover

Goals: validate and render a 16-node cluster's files in under 50 ms with under 50 MiB peak;
in the lab, a no-op deploy of two nodes in under 3 s and a failover within deadtime + 2 s.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from hbdeploy import validate
from hbdeploy.render import render_node
from hbdeploy.source import from_document


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


def bench_lab() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from hbdeploy.lab import Lab
    from hbdeploy.lab.demo import http_name

    root = Path(__file__).resolve().parents[1]
    lab = Lab(report=lambda m: print(f"lab: {m}"))
    lab.down()
    t = time.monotonic()
    lab.up(nodes=2)
    print(f"lab up (image cached): {time.monotonic() - t:.1f}s")
    exe = str(Path(sys.executable).parent / "hbdeploy")
    argv = [exe, "-S", str(lab.ssh_config_path), "-H", "haproxy1,haproxy2", "deploy",
            "--cluster", str(root / "examples" / "lab.yml")]
    for label in ("deploy from bare nodes", "deploy again (nothing to do)"):
        t = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True)
        print(f"{label}: {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    lab.cut("haproxy1")
    while http_name("10.213.0.100") != "haproxy2":
        time.sleep(0.05)
    print(f"failover after a cut (deadtime 5s): {time.monotonic() - t:.1f}s")
    lab.heal("haproxy1")
    lab.down()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", action="store_true")
    args = parser.parse_args()
    for n in (2, 4, 16, 64):
        ms, mib = bench_render(n)
        print(f"validate + render {n:>2} nodes: {ms:7.2f} ms, peak {mib:5.1f} MiB")
    if args.lab:
        bench_lab()
