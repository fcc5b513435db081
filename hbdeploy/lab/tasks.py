"""`hbdeploy lab.*` tasks: thin wrappers over :class:`hbdeploy.lab.Lab`."""

from __future__ import annotations

from invoke import Collection, Context, task

from ..tasks import reports_errors
from .lab import Lab
from .rootfs import DEFAULT_RELEASE


def _lab() -> Lab:
    return Lab(report=lambda message: print(f"lab: {message}", flush=True))


def format_status(lab: Lab) -> str:
    rows = lab.status()
    if not rows:
        return "the lab is down (hbdeploy lab.up starts it)"
    lines = [f"{'NODE':<10} {'ADDRESS':<14} {'DEBIAN':<9} {'POWER':<6} {'SSH':<4} {'LINK':<5} "
             "FLOATING IPS"]
    for r in rows:
        lines.append(f"{r.name:<10} {r.ip:<14} {lab.release(r.name):<9} "
                     f"{'on' if r.running else 'off':<6} "
                     f"{'yes' if r.ssh else 'no':<4} {'up' if r.link_up else 'cut':<5} "
                     f"{' '.join(r.floating_ips) or '-'}")
    lines.append(f"ssh config: {lab.ssh_config_path}")
    return "\n".join(lines)


@task(help={"nodes": "number of nodes, haproxy1..N (default 2, at most 16)",
            "subnet": "the lab's private /24 (default 10.213.0.0/24)",
            "release": "Debian release of the nodes: bookworm (default) or trixie, or one "
                       "per node for a mixed lab (bookworm,trixie)"})
@reports_errors
def up(c: Context, nodes: int = 2, subnet: str | None = None,
       release: str = DEFAULT_RELEASE) -> None:
    """Boot the lab's nodes (idempotent) and write its ssh_config and known_hosts."""
    lab = _lab()
    releases = release.split(",")
    wanted: str | list[str] = releases[0] if len(releases) == 1 else releases
    for m in lab.up(nodes=nodes, subnet=subnet, release=wanted):
        print(f"{m.name} {m.ip} {lab.release(m.name)}")
    print(f"ssh config: {lab.ssh_config_path} (known hosts: {lab.known_hosts_path})")


@task
@reports_errors
def down(c: Context) -> None:
    """Stop every node; remove every namespace, link, mount and process of the lab."""
    lab = _lab()
    lab.down()
    left = lab.leftovers()
    if left:
        raise SystemExit(f"lab: left behind: {', '.join(left)}")
    print("lab: down, nothing left behind")


@task
@reports_errors
def status(c: Context) -> None:
    """Nodes, addresses, power, ssh, link, and which node holds each floating IP."""
    print(format_status(_lab()))


@task(name="ssh-config")
def ssh_config(c: Context) -> None:
    """Print the path of the lab's ssh_config (use with -S)."""
    print(_lab().ssh_config_path)


@task(positional=["node"], help={"node": "a lab node (haproxy1, haproxy2, ...)"})
@reports_errors
def cut(c: Context, node: str) -> None:
    """Take NODE's network link down (it keeps running, alone)."""
    _lab().cut(node)
    print(f"lab: {node} cut")


@task(positional=["node"], help={"node": "a lab node (haproxy1, haproxy2, ...)"})
@reports_errors
def heal(c: Context, node: str) -> None:
    """Bring NODE's network link back up."""
    _lab().heal(node)
    print(f"lab: {node} healed")


@task(positional=["node"], help={"node": "a lab node (haproxy1, haproxy2, ...)"})
@reports_errors
def kill(c: Context, node: str) -> None:
    """Hard power-off of NODE (as pulling the plug)."""
    _lab().kill(node)
    print(f"lab: {node} killed")


@task(positional=["node"], help={"node": "a lab node (haproxy1, haproxy2, ...)"})
@reports_errors
def start(c: Context, node: str) -> None:
    """Boot NODE again, with the disk it had before lab.kill."""
    _lab().start(node)
    print(f"lab: {node} started")


@task(help={"cluster": "cluster file for the lab (default examples/lab.yml)"})
@reports_errors
def demo(c: Context, cluster: str | None = None) -> None:
    """Lab up, deploy examples/lab.yml, show status, run a failover drill and time it."""
    from pathlib import Path

    from .demo import EXAMPLE, run_demo

    run_demo(Path(cluster) if cluster else EXAMPLE)


namespace = Collection("lab", up, down, status, ssh_config, cut, heal, kill, start)
