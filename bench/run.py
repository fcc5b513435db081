"""Benchmarks (not tests): speed and memory goals of hbdeploy.

    .venv/bin/python bench/run.py          # validation + rendering, offline
    .venv/bin/python bench/run.py --lab    # also: deploy from bare, no-op rerun, failover,
                                           # and a deploy of 4 bare nodes against 2

Goals: validate and render a 16-node cluster's files in under 50 ms with under 50 MiB peak;
in the lab, a no-op deploy of two nodes in under 3 s, a failover within deadtime + 2 s, and
a deploy of 4 bare nodes in less than twice the time of 2 (hosts are pre-flighted,
installed and pushed in parallel; only the starts are one at a time).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

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


def four_node_cluster(path: Path) -> Path:
    """examples/lab.yml with haproxy3 and haproxy4 added."""
    text = (ROOT / "examples" / "lab.yml").read_text()
    text = text.replace("  haproxy2: 10.213.0.12\n", "  haproxy2: 10.213.0.12\n"
                        "  haproxy3: 10.213.0.13\n  haproxy4: 10.213.0.14\n")
    path.write_text(text)
    return path


def bench_lab() -> None:
    import subprocess
    import sys
    import tempfile

    from hbdeploy.lab import Lab
    from hbdeploy.lab.demo import http_name

    lab = Lab(report=lambda m: print(f"lab: {m}"))
    exe = str(Path(sys.executable).parent / "hbdeploy")

    def deploy(hosts: int, cluster: Path) -> float:
        names = ",".join(f"haproxy{i}" for i in range(1, hosts + 1))
        t = time.monotonic()
        subprocess.run([exe, "-S", str(lab.ssh_config_path), "-H", names, "deploy",
                        "--cluster", str(cluster)], check=True, capture_output=True)
        return time.monotonic() - t

    lab.down()
    t = time.monotonic()
    lab.up(nodes=2)
    print(f"lab up (image cached): {time.monotonic() - t:.1f}s")
    two = deploy(2, ROOT / "examples" / "lab.yml")
    print(f"deploy from bare nodes (2): {two:.1f}s")
    print(f"deploy again (nothing to do): {deploy(2, ROOT / 'examples' / 'lab.yml'):.1f}s")
    t = time.monotonic()
    lab.cut("haproxy1")
    while http_name("10.213.0.100") != "haproxy2":
        time.sleep(0.05)
    print(f"failover after a cut (deadtime 5s): {time.monotonic() - t:.1f}s")
    lab.heal("haproxy1")
    lab.down()
    lab.up(nodes=4)
    with tempfile.TemporaryDirectory() as tmp:
        four = deploy(4, four_node_cluster(Path(tmp) / "four.yml"))
    print(f"deploy from bare nodes (4): {four:.1f}s = {four / two:.2f} x the 2-node deploy")
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
