"""Plan: from a host's facts and its rendered files, what must change — or why it must not.

Pre-flight problems (wrong name, unsupported OS, missing interface or address) are found
here for every host before any host is changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from . import equivalence, firewall, layout, supervision, sysctl
from .facts import HostFacts
from .model import Cluster, Node
from .render import RenderedFile, render_node

# What hbdeploy is tested on, end to end (the lab boots both): Debian 12 and 13.
SUPPORTED = {"debian": ("12", "13")}
RHEL_FAMILY = ("rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unsupported_os(facts: HostFacts) -> str | None:
    """Why hbdeploy refuses this host's OS, or None when it is a supported one."""
    name = f"{facts.os_id or 'an unknown OS'} {facts.os_version}".strip()
    if facts.os_id in SUPPORTED and facts.os_version in SUPPORTED[facts.os_id]:
        return None
    ids = {facts.os_id, *facts.os_like.split()}
    if ids & set(RHEL_FAMILY):
        return (f"{name} is of the RHEL family, where heartbeat has not been packaged since "
                "EPEL 6 (Pacemaker with Corosync replaced it there); hbdeploy supports "
                "Debian 12 and 13")
    return (f"unsupported OS {name}; hbdeploy supports Debian 12 and 13 (the systems it is "
            "tested on, with their heartbeat 3.0.6 packages)")


def required_tools(cluster: Cluster) -> tuple[str, ...]:
    """Paths an operator-provided heartbeat (``install: false``) must have."""
    return (*layout.TOOLS, layout.IPFAIL) if cluster.uses_ipfail else layout.TOOLS


@dataclass
class HostPlan:
    """What one host gets."""

    host: str
    node: Node
    facts: HostFacts
    files: dict[str, RenderedFile]
    changed_files: list[str] = field(default_factory=list)  # heartbeat sees a change
    cosmetic_files: list[str] = field(default_factory=list)  # comments, spacing, mode only
    install: bool = False
    firewall: bool = False
    firewall_backend: str = ""
    firewall_script: str = ""
    # A media change (deploy: media_switch): the script with the media heartbeat runs on now
    # kept open too, until every node has re-read ha.cf; then firewall_script.
    firewall_wide: str = ""
    enable: bool = False
    floating_ips: tuple[str, ...] = ()
    supervision: dict[str, RenderedFile] = field(default_factory=dict)
    changed_supervision: list[str] = field(default_factory=list)
    start_guard: bool = False  # hbdeploy-guard not running (or its files changed)
    sysctl: str = ""  # "write" or "remove" hbdeploy's nonlocal_bind file (sysctl.py)
    reload_haresources: bool = False  # `replace`: only the preferred node renamed
    unapplied: list[str] = field(default_factory=list)  # in place, not re-read by heartbeat

    @property
    def rereading(self) -> list[str]:
        """The files heartbeat must read anew: the changed ones, and the ones an earlier
        run put in place and stopped before heartbeat re-read them (layout.UNAPPLIED)."""
        return [*self.changed_files, *(f for f in self.unapplied
                                       if f not in self.changed_files)]

    @property
    def restart(self) -> bool:
        """Restart (or reload) only when heartbeat must read a file anew, or start when
        heartbeat is not running."""
        return bool(self.rereading) or not self.facts.running

    @property
    def deferred(self) -> list[str]:
        """Files written only just before this node's restart in the rollout.

        haresources on a node holding resources: it must give them up under the haresources
        that started them (a resource dropped from the new file would otherwise never be
        stopped). ha.cf on a running node that is restarted and gets a new password: the
        password is reloaded on every node first, and with a changed ha.cf on disk that
        reload makes heartbeat re-execute itself, which left its resource state "in
        transition" and a later handover refused (CI); the restart reads ha.cf anyway."""
        later = []
        if self.facts.running and not self.reload_only:
            if {"ha.cf", "authkeys"} <= set(self.changed_files):
                later.append("ha.cf")
            holds = bool(self.facts.ips() & set(self.floating_ips))
            if holds and "haresources" in self.changed_files:
                later.append("haresources")
        return later

    @property
    def reload_only(self) -> bool:
        """Heartbeat re-reads ha.cf and authkeys on SIGHUP (``heartbeat -r``) and keeps its
        resources; haresources, a stopped heartbeat or a new install need a restart."""
        rereads = {"ha.cf", "authkeys"} | ({"haresources"} if self.reload_haresources
                                           else set())
        return (self.facts.running and self.installed and bool(self.rereading)
                and set(self.rereading) <= rereads)

    @property
    def installed(self) -> bool:
        """heartbeat is on the host: its package, or the operator's (``install: false``)."""
        return self.facts.installed or not self.node.install

    @property
    def packages(self) -> str:
        """What the install step installs, for the run's messages."""
        if self.facts.installed:
            return "net-tools (heartbeat's IPaddr resource needs ifconfig)"
        return "heartbeat and net-tools"

    @property
    def heartbeat_path(self) -> str:
        return layout.HEARTBEAT

    @property
    def written(self) -> list[str]:
        """Every file a deploy writes; only ``changed_files`` reload or restart heartbeat."""
        return [*self.changed_files, *self.cosmetic_files]

    @property
    def changes_anything(self) -> bool:
        return bool(self.install or self.written or self.firewall or self.enable
                    or self.restart or self.changed_supervision or self.start_guard
                    or self.sysctl)


def preflight(host: str, node: Node, facts: HostFacts, cluster: Cluster) -> list[str]:
    """Every reason this host must not be changed; empty when it may."""
    problems = []
    if facts.uname != node.name:
        problems.append(
            f"{host}: `uname -n` prints {facts.uname!r} but the cluster file names this node "
            f"{node.name!r} (heartbeat matches nodes by that name). Fix one: rename the node "
            f"to {facts.uname!r} in the cluster file, or run `hostnamectl set-hostname "
            f"{node.name}` on the host")
    why = unsupported_os(facts)
    if why:
        problems.append(f"{host}: {why}")
    if not node.install:
        problems += _provided(host, node, facts, cluster)
    if facts.init != "systemd":
        problems.append(f"{host}: the init system is not systemd; hbdeploy needs systemd to "
                        "enable and restart heartbeat")
    if node.interface not in facts.links:
        problems.append(f"{host}: interface {node.interface!r} (nodes.{node.name}.interface or "
                        f"interface) does not exist there; it has {', '.join(facts.links)}")
    if node.ip not in facts.ips():
        problems.append(f"{host}: the node's address {node.ip} is not on any of its "
                        f"interfaces (it has {', '.join(sorted(facts.ips())) or 'none'})")
    for group in cluster.groups:  # any node may have to hold any group
        for name in group.interfaces():
            if name not in facts.links:
                problems.append(f"{host}: resources.{group.node} brings a floating IP up on "
                                f"interface {name!r}, which this host does not have (it has "
                                f"{', '.join(facts.links)}); name an interface every node "
                                "has, or leave it out to let heartbeat find it")
    if cluster.firewall.enabled:
        backend, why = firewall.choose(facts)
        if backend is None:
            problems.append(f"{host}: {why}")
    return problems


def missing_tools(cluster: Cluster, facts: HostFacts) -> list[str]:
    """heartbeat's tools (ipfail too where ``ping`` is set) and ifconfig the host lacks."""
    missing = [path for path in required_tools(cluster) if path not in facts.has]
    if not facts.net_tools:
        missing.append("ifconfig (net-tools: heartbeat's IPaddr needs it)")
    return missing


def missing_resource_scripts(cluster: Cluster, facts: HostFacts) -> list[str]:
    """The resource scripts haresources starts that are in none of heartbeat's folders."""
    return [name for name in cluster.resource_scripts()
            if not set(layout.resource_paths((name,))) & set(facts.has)]


def _provided(host: str, node: Node, facts: HostFacts, cluster: Cluster) -> list[str]:
    """What an operator-provided heartbeat (``install: false``) lacks on this host."""
    where = f"install: false (nodes.{node.name}.install or install)"
    missing = missing_tools(cluster, facts)
    problems = []
    if missing:
        problems.append(f"{host}: {where} says the operator provides heartbeat, but "
                        f"this host lacks {', '.join(missing)}; install heartbeat 3.0.6 "
                        "there (Debian's layout), or set install: true to let hbdeploy "
                        "install it")
    scripts = missing_resource_scripts(cluster, facts)
    if scripts:
        folders = " nor ".join(layout.RESOURCE_DIRS)
        problems.append(f"{host}: {where}: the resource script(s) "
                        f"{', '.join(scripts)} are in neither {folders}; heartbeat could not "
                        "start its resources there")
    return problems


def _alike(name: str, facts: HostFacts, wanted: str) -> bool:
    """The host's file means the same to heartbeat as ``wanted`` (comments, spacing, mode)."""
    if name == "authkeys":
        return bool(facts.norm_authkeys) and facts.norm_authkeys == \
            equivalence.authkeys_digest(wanted)
    return name in facts.texts and equivalence.same(name, facts.texts[name], wanted)


def plan_host(host: str, node: Node, facts: HostFacts, cluster: Cluster) -> HostPlan:
    """What ``host`` needs so that it matches the cluster file."""
    files = render_node(cluster, node.name, ipfail_path=layout.IPFAIL)
    plan = HostPlan(host, node, facts, files, floating_ips=cluster.floating_ips())
    # Debian's heartbeat does not depend on net-tools, but its IPaddr resource needs
    # ifconfig and route (it came with heartbeat's Recommends, which hbdeploy leaves out).
    plan.install = node.install and not (facts.installed and facts.net_tools)
    for name, rendered in files.items():
        wanted_mode = f"{rendered.mode:o} root"
        if (facts.checksums.get(name) == sha256(rendered.content)
                and facts.modes.get(name) == wanted_mode):
            continue
        if _alike(name, facts, rendered.content):
            plan.cosmetic_files.append(name)
        else:
            plan.changed_files.append(name)
    if cluster.firewall.enabled:
        backend, _ = firewall.choose(facts)
        if backend:  # preflight has refused the host otherwise
            plan.firewall_backend = backend
            plan.firewall_script = firewall.script(backend, cluster, node)
            unit_state = "enabled" if firewall.boot_unit(backend) else ""
            plan.firewall = (facts.fw_script != sha256(plan.firewall_script)
                             or facts.fw_check != "ok" or facts.fw_unit != unit_state)
    plan.unapplied = facts.unapplied  # of the three files, like ``files``
    plan.enable = facts.hb_enabled != "enabled"
    plan.supervision = supervision.render(cluster, node.name, facts.gateway,
                                          plan.heartbeat_path)
    plan.changed_supervision = [key for key, rendered in plan.supervision.items()
                                if facts.checksums.get(key) != sha256(rendered.content)]
    if cluster.nonlocal_bind:
        in_place = facts.checksums.get("sysctl") == sha256(sysctl.CONTENT)
        plan.sysctl = "" if in_place and facts.nonlocal_bind == "1" else "write"
    elif "sysctl" in facts.checksums:
        plan.sysctl = "remove"
    plan.start_guard = bool(plan.changed_supervision) or facts.guard_active != "active" \
        or facts.guard_enabled != "enabled"
    return plan
