"""The lab's network: a bridge in a namespace of its own, one namespace per node.

::

    controller (host ns)            bridge ns "hbl-br"                 node ns "hbl-<node>"
    hbl-ctl 10.213.0.1/24  <--veth-->  ctl ─┐
                                            br0 ── n1 <--veth-->  eth0 10.213.0.11/24
                                                ── n2 <--veth-->  eth0 10.213.0.12/24

Nodes get no default route and nothing forwards between namespaces, so nothing in the
lab reaches beyond the bridge. Cutting a node takes its bridge port down.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass

from .sh import LabError, run

# The names of the lab's namespaces, links and machines start with it: a second lab (a test
# worker's, in a network namespace of its own) takes another ($HBDEPLOY_LAB_PREFIX).
PREFIX = os.environ.get("HBDEPLOY_LAB_PREFIX", "hbl")
if not re.fullmatch(r"[a-z][a-z0-9]{1,5}", PREFIX):
    raise ValueError(f"HBDEPLOY_LAB_PREFIX {PREFIX!r}: 2 to 6 lowercase letters or digits")
BRIDGE_NS = f"{PREFIX}-br"
HOST_LINK = f"{PREFIX}-ctl"


@dataclass(frozen=True)
class Addressing:
    """Addresses of one lab: the controller is .1, node i (1-based) is .10+i."""

    subnet: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> Addressing:
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            raise LabError(f"lab subnet {text!r}: {exc}") from None
        if net.prefixlen != 24 or not net.is_private:
            raise LabError(f"lab subnet {text!r}: expected a private /24 such as 10.213.0.0/24")
        return cls(net)

    @property
    def controller(self) -> str:
        return str(self.subnet.network_address + 1)

    def node_ip(self, index: int) -> str:
        return str(self.subnet.network_address + 10 + index)

    def floating_ip(self, index: int = 0) -> str:
        return str(self.subnet.network_address + 100 + index)


def node_ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def node_mac(index: int) -> str:
    """A locally administered MAC address for node ``index``."""
    return f"02:68:62:6c:00:{index:02x}"


def bridge_port(index: int) -> str:
    return f"n{index}"


def netns_list() -> set[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    try:
        return {entry["name"] for entry in json.loads(out or "[]")}
    except (ValueError, KeyError, TypeError):
        return set()


def lab_namespaces() -> set[str]:
    return {ns for ns in netns_list() if ns.startswith(f"{PREFIX}-")}


def host_links() -> set[str]:
    out = run(["ip", "-j", "link", "show"], check=False).stdout
    try:
        names = {link["ifname"] for link in json.loads(out or "[]")}
    except (ValueError, KeyError, TypeError):
        return set()
    return {name for name in names if name.startswith(f"{PREFIX}-")}


def check_subnet_free(addressing: Addressing) -> None:
    """Refuse a subnet that overlaps a route the host already has (other than ours)."""
    out = run(["ip", "-j", "-4", "route", "show"], check=False).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == HOST_LINK:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(addressing.subnet):
            raise LabError(f"lab subnet {addressing.subnet} overlaps the host route {dst} on "
                           f"{route.get('dev')}; choose another with --subnet")


def ensure_bridge(addressing: Addressing) -> None:
    """The bridge namespace and the controller's link into it (idempotent)."""
    check_subnet_free(addressing)
    if BRIDGE_NS not in netns_list():
        run(["ip", "netns", "add", BRIDGE_NS])
    run(["ip", "-n", BRIDGE_NS, "link", "set", "lo", "up"])
    if run(["ip", "-n", BRIDGE_NS, "link", "show", "br0"], check=False).returncode != 0:
        run(["ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", BRIDGE_NS, "link", "set", "br0", "up"])
    if HOST_LINK not in host_links():
        run(["ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", "ctl",
             "netns", BRIDGE_NS])
    run(["ip", "-n", BRIDGE_NS, "link", "set", "ctl", "master", "br0", "up"])
    address = f"{addressing.controller}/{addressing.subnet.prefixlen}"
    run(["ip", "addr", "replace", address, "dev", HOST_LINK])
    run(["ip", "link", "set", HOST_LINK, "up"])


def ensure_node_link(name: str, index: int, addressing: Addressing) -> None:
    """The node's namespace with eth0 on the bridge and its address (idempotent)."""
    ns = node_ns(name)
    if ns not in netns_list():
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    port = bridge_port(index)
    if run(["ip", "-n", ns, "link", "show", "eth0"], check=False).returncode != 0:
        run(["ip", "-n", BRIDGE_NS, "link", "del", port], check=False)
        run(["ip", "-n", BRIDGE_NS, "link", "add", port, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
    run(["ip", "-n", BRIDGE_NS, "link", "set", port, "master", "br0", "up"])
    # A fixed MAC per node: a node re-created after a crash answers at the address the
    # controller's ARP cache already holds, instead of a stale one for half a minute.
    run(["ip", "-n", ns, "link", "set", "eth0", "address", node_mac(index)])
    address = f"{addressing.node_ip(index)}/{addressing.subnet.prefixlen}"
    run(["ip", "-n", ns, "addr", "replace", address, "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def flush_extra_addresses(name: str, own: str) -> None:
    """Remove every IPv4 address of the node's eth0 but ``own`` (a floating IP it held)."""
    ns = node_ns(name)
    for address in addresses(ns):
        if address != own:
            run(["ip", "-n", ns, "-4", "addr", "flush", "dev", "eth0", "to", f"{address}/32"],
                check=False)


def set_port(index: int, up: bool) -> None:
    """Cut (down) or heal (up) a node's link by its bridge port."""
    run(["ip", "-n", BRIDGE_NS, "link", "set", bridge_port(index), "up" if up else "down"])


def port_is_up(index: int) -> bool:
    out = run(["ip", "-j", "-n", BRIDGE_NS, "link", "show", bridge_port(index)],
              check=False).stdout
    try:
        return "UP" in json.loads(out)[0].get("flags", [])
    except (ValueError, IndexError, TypeError):
        return False


def addresses(ns: str) -> list[str]:
    """IPv4 addresses configured in a namespace (on any interface but lo)."""
    out = run(["ip", "-j", "-4", "-n", ns, "addr", "show"], check=False).stdout
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return []
    return [a["local"] for link in links if link.get("ifname") != "lo"
            for a in link.get("addr_info", []) if "local" in a]


def remove_all() -> None:
    """Delete every lab namespace and host link (their veth peers go with them)."""
    for link in host_links():
        run(["ip", "link", "del", link], check=False)
    for ns in lab_namespaces():
        run(["ip", "netns", "del", ns], check=False)
