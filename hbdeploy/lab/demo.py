"""`hbdeploy demo`: lab up, deploy examples/lab.yml, status, a failover drill with timings."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .. import config
from ..deploy import deploy_cluster
from ..drill import home_deadline
from ..model import Cluster
from ..remote import connections
from .lab import Lab
from .sh import LabError, poll

EXAMPLE = Path(str(resources.files("hbdeploy.examples").joinpath("lab.yml")))


def http_name(ip: str, timeout: float = 0.3) -> str | None:
    """The node answering HTTP on ``ip`` (the lab's probe server), or None."""
    try:
        with urllib.request.urlopen(f"http://{ip}/", timeout=timeout) as response:
            return response.read().decode().strip()
    except OSError:
        return None


def _deploy(cluster: Cluster, lab: Lab, out: Callable[[str], None]) -> None:
    """Deploy ``cluster`` to the lab and print the recap; LabError when it failed."""
    recap = deploy_cluster(cluster, connections(list(cluster.node_names), lab.ssh_config_path),
                           out=out)
    out(recap.table())
    if recap.failed:
        raise LabError("deploy failed: " + "; ".join(recap.messages))


def run_demo(cluster_file: Path = EXAMPLE, out: Callable[[str], None] = print) -> None:
    def step(text: str) -> None:
        out(f"\n== {text}")

    step("1/4 lab up (first run builds the node image: about a minute)")
    lab = Lab(report=lambda m: out(f"lab: {m}"))
    cluster = config.load_cluster(cluster_file)
    lab.up(nodes=max(2, len(cluster.nodes)))
    step(f"2/4 deploy {cluster_file} to {', '.join(cluster.node_names)}")
    _deploy(cluster, lab, out)
    step("3/4 status")
    from .tasks import format_status

    out(format_status(lab))
    group = cluster.groups[0]
    ip, primary = group.floating_ips()[0], group.node
    step(f"4/4 failover drill: cut {primary}, measure until {ip} answers from a spare")
    poll(f"{ip} answering from {primary}", lambda: http_name(ip) == primary, 60, 0.05)
    lab.cut(primary)
    try:
        failover = poll(f"{ip} answering from a spare",
                        lambda: http_name(ip) not in (None, primary), 60, 0.05)
        spare = http_name(ip)
        out(f"{ip} answered from {spare} {failover:.1f}s after {primary} was cut "
            f"(deadtime {cluster.timings.deadtime})")
    finally:
        lab.heal(primary)
    out(f"{primary} healed")
    if cluster.auto_failback == "on":
        healed = time.monotonic()
        how = ("auto_failback on; heartbeat first releases the group on both sides after a "
               "partition")

        def home() -> bool:
            return http_name(ip) == primary

        try:
            poll(f"{ip} back on {primary}", home, home_deadline(cluster), 0.05)
        except LabError as exc:
            # heartbeat did not bring it home by itself (CI: a failback request the holder
            # ignored for an hour): a deploy with nothing to change converges, with
            # heartbeat's own tools, and says what it did.
            out(f"{exc}: heartbeat did not bring it back by itself; deploying again (nothing "
                "to change: it repairs placement)")
            _deploy(cluster, lab, out)
            poll(f"{ip} back on {primary}", home, 30, 0.05)
            how = "after the repair of that deploy"
        back = time.monotonic() - healed
        out(f"{ip} answered from {primary} again {back:.1f}s after the heal ({how})")
    out("\ndone: the lab stays up (hbdeploy lab.status, lab.down when finished)")
