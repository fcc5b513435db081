"""Targets: the hosts of a run, each matched to the node of the cluster file it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fabric import Connection

from .errors import HbdeployError
from .model import Cluster, Node
from .remote import Remote, verify_host_keys


class TargetError(HbdeployError):
    """A host matches no node, or names a node twice."""


@dataclass
class Target:
    """A host given on the command line (or a node's IP) and the node it is."""

    host: str
    node: Node
    remote: Remote


def node_of(nodes: Sequence[Node], conn: Connection) -> Node | None:
    """The node ``conn`` was given as (its name or address), else the one its ssh_config
    resolves to by address; None when there is none."""
    given = conn.original_host or conn.host
    return next((n for n in nodes if given in (n.name, n.ip)), None) or next(
        (n for n in nodes if conn.host == n.ip), None)


def match_targets(cluster: Cluster, connections: Sequence[Connection]) -> list[Target]:
    """Pair each connection with its node, by the name or address it was given as."""
    targets, problems, seen = [], [], {}
    for conn in connections:
        given = conn.original_host or conn.host
        node = node_of(cluster.nodes, conn)
        if node is None:
            problems.append(f"{given}: matches no node of the cluster file by name or address "
                            f"(nodes: {', '.join(f'{n.name} {n.ip}' for n in cluster.nodes)})")
            continue
        if node.name in seen:
            problems.append(f"{given}: is node {node.name} again (already given as "
                            f"{seen[node.name]})")
            continue
        seen[node.name] = given
        targets.append(Target(given, node, Remote(verify_host_keys(conn), given)))
    if problems:
        raise TargetError("\n".join(problems))
    return targets


def default_connections(cluster: Cluster, config=None, spares: bool = False
                        ) -> list[Connection]:
    """One connection per configured node, by its IP (deploy without -H: ``spares`` too)."""
    nodes = [*cluster.nodes, *(cluster.spares if spares else ())]
    return [Connection(node.ip, config=config) for node in nodes]


