"""The task collection behind both `hbdeploy` and `fab` (via fabfile.py).

Tasks stay thin: they parse options, call the library and turn its errors into
a one-line message and an exit code, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fabric import Connection
from invoke import Collection, Context, Exit, task

from . import adopt, config, handover, lock, membership, scaffold, secret
from .apply import remove_firewall
from .cli import exit_interrupted
from .cluster_tasks import enlist, post_task, take, take_hosts
from .deploy import deploy_cluster
from .drill import run_drill
from .errors import ConfigError, HbdeployError
from .files import write_atomic
from .render import render_node
from .status import cluster_status
from .targets import default_connections, match_targets

F = TypeVar("F", bound=Callable[..., Any])
BREAK_LOCK_HELP = ("take the run lock from another hbdeploy run that is dead (the lock "
                   "names it; an abandoned lock also expires by itself, docs/reliability.md)")
CLUSTER_HELP = ("cluster file (default: $HBDEPLOY_CONFIG, config/heartbeat.yml, "
                "config/moonshine.yml)")


def reports_errors(func: F) -> F:
    """Turn hbdeploy's own errors into a clean message on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise Exit(str(exc), code=2) from None
        except HbdeployError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            exit_interrupted(
                "interrupted: the step under way on each host was let finish and no later "
                "one started (files are replaced whole, rule sets loaded whole); the run "
                "lock is released; rerun the command to converge")

    return wrapper  # type: ignore[return-value]


@task(help={"cluster": CLUSTER_HELP})
@reports_errors
def check(c: Context, cluster: str | None = None) -> None:
    """Validate the cluster file; print a summary or every problem (exit 2)."""
    print(config.summary(config.load_cluster(cluster)))


@task(positional=[], help={"node": "node to render the files of (required)",
                           "out": "write the files into this folder", "cluster": CLUSTER_HELP})
@reports_errors
def render(c: Context, node: str = "", out: str | None = None, cluster: str | None = None
           ) -> None:
    """Render ha.cf, haresources and authkeys of one node (authkeys masked on stdout)."""
    model = config.load_cluster(cluster)
    if not node:
        raise Exit(f"error: --node is required: one of {', '.join(model.node_names)}", code=2)
    if node not in model.node_names:
        raise Exit(f"error: node {node!r} is not in the cluster file "
                   f"(nodes: {', '.join(model.node_names)})", code=2)
    files = render_node(model, node)
    if out:
        for rendered in files.values():
            write_atomic(Path(out) / rendered.name, rendered.content, rendered.mode)
            print(f"wrote {Path(out) / rendered.name} (mode {rendered.mode:04o})")
        return
    for rendered in files.values():
        print(f"==> {rendered.remote_path} <==")
        print(rendered.shown(), end="")


@post_task
@reports_errors
def _deploy_run(c: Context) -> None:
    model, connections, options = take(c, spares=True)
    _finish(deploy_cluster(model, connections, check=options["check"],
                           verbose=options["verbose"], break_lock=options["break_lock"]),
            options["check"])


@task(post=[_deploy_run], auto_shortflags=False, help={
    "cluster": CLUSTER_HELP,
    "check": "pre-flight, then show what each host would get; change nothing",
    "verbose": "show remote output", "break_lock": BREAK_LOCK_HELP})
@reports_errors
def deploy(c: Context, cluster: str | None = None, check: bool = False,
           verbose: bool = False, break_lock: bool = False) -> None:
    """Provision heartbeat on the hosts (-H, else every node): idempotent; --check to preview."""
    enlist(c, cluster, check=check, verbose=verbose, break_lock=break_lock)


@post_task
@reports_errors
def _firewall_remove_run(c: Context) -> None:
    model, connections, _ = take(c)
    for target in match_targets(model, connections):
        removed = remove_firewall(target.remote)
        print(f"[{target.host}] " + ("firewall rules removed" if removed else
                                    "no hbdeploy firewall rules"))


@task(name="remove", post=[_firewall_remove_run], help={"cluster": CLUSTER_HELP})
@reports_errors
def firewall_remove(c: Context, cluster: str | None = None) -> None:
    """Remove hbdeploy's firewall chain, script and boot unit from the hosts."""
    enlist(c, cluster)


@post_task
@reports_errors
def _status_run(c: Context) -> None:
    model, connections, options = take(c)
    result = cluster_status(model, connections)
    print(result.to_json() if options["json"] else result.table())
    if result.code:
        raise Exit(code=result.code)


@task(post=[_status_run], help={"cluster": CLUSTER_HELP, "json": "machine-readable output"})
@reports_errors
def status(c: Context, cluster: str | None = None, json: bool = False) -> None:
    """Cluster health: exit 0 healthy, 1 degraded, 2 critical (split brain, orphaned group)."""
    enlist(c, cluster, json=json)


def _move(c: Context, move, command: str) -> None:
    model, connections, options = take(c)
    targets = match_targets(model, connections)
    with lock.holding([t.remote for t in targets], command,
                      break_lock=options["break_lock"]):
        move(model, targets, options["node"])


@post_task
@reports_errors
def _standby_run(c: Context) -> None:
    _move(c, handover.standby, "standby")


@post_task
@reports_errors
def _takeover_run(c: Context) -> None:
    _move(c, handover.takeover, "takeover")


@task(positional=["node"], post=[_standby_run],
      help={"node": "the node that hands its resources over", "cluster": CLUSTER_HELP,
            "break_lock": BREAK_LOCK_HELP})
@reports_errors
def standby(c: Context, node: str, cluster: str | None = None, break_lock: bool = False) -> None:
    """NODE hands its resource groups to its peers (hb_standby); timed."""
    enlist(c, cluster, node=node, break_lock=break_lock)


@task(positional=["node"], post=[_takeover_run],
      help={"node": "the node that takes its resources back", "cluster": CLUSTER_HELP,
            "break_lock": BREAK_LOCK_HELP})
@reports_errors
def takeover(c: Context, node: str, cluster: str | None = None, break_lock: bool = False) -> None:
    """NODE takes every resource group (hb_takeover all); timed."""
    enlist(c, cluster, node=node, break_lock=break_lock)


@post_task
@reports_errors
def _bootstrap_run(c: Context) -> None:
    model, connections, options = take(c)
    given = {conn.original_host or conn.host for conn in connections}
    others = [Connection(n.ip, config=c.config) for n in model.nodes
              if n.name not in given and n.ip not in given]
    recap = membership.bootstrap(model, connections, others, check=options["check"],
                                 break_lock=options["break_lock"])
    _finish(recap, options["check"])


@task(post=[_bootstrap_run], auto_shortflags=False, help={
    "cluster": CLUSTER_HELP, "break_lock": BREAK_LOCK_HELP,
    "check": "pre-flight and show the changes only"})
@reports_errors
def bootstrap(c: Context, cluster: str | None = None, check: bool = False,
              break_lock: bool = False) -> None:
    """Join the new node(s) given with -H to the running cluster without moving its IPs."""
    if not isinstance(c, Connection):
        raise Exit("error: bootstrap needs the new node(s) with -H, e.g. "
                   "hbdeploy -H haproxy3 bootstrap", code=2)
    enlist(c, cluster, check=check, break_lock=break_lock)


@post_task
@reports_errors
def _decommission_run(c: Context) -> None:
    model, _, options = take(c, require_hosts=False)
    leaving = Connection(options["node"], config=c.config)
    _finish(membership.decommission(model, leaving,
                                    default_connections(model, config=c.config),
                                    break_lock=options["break_lock"]), False)


@task(positional=["node"], post=[_decommission_run],
      help={"node": "the node to take out (already removed from the cluster file's nodes)",
            "cluster": CLUSTER_HELP, "break_lock": BREAK_LOCK_HELP})
@reports_errors
def decommission(c: Context, node: str, cluster: str | None = None,
                 break_lock: bool = False) -> None:
    """Take NODE (already removed from the cluster file) out of the running cluster."""
    enlist(c, cluster, node=node, break_lock=break_lock)


@post_task
@reports_errors
def _replace_run(c: Context) -> None:
    model, _, options = take(c, require_hosts=False)
    dead = Connection(options["dead"], config=c.config)
    members = default_connections(model, config=c.config)
    _finish(membership.replace(model, dead, options["spare"], members,
                               fenced=options["fenced"], break_lock=options["break_lock"]),
            False)


@task(positional=["dead"], post=[_replace_run], auto_shortflags=False, help={
    "dead": "the member that died (no longer in the cluster file's nodes)",
    "with": "the spare that takes its place (already moved to nodes in its place)",
    "fenced": "the dead node answers no SSH and has no member gate: you have made sure it "
              "cannot come back (powered off, off the network)",
    "cluster": CLUSTER_HELP, "break_lock": BREAK_LOCK_HELP})
@reports_errors
def replace(c: Context, dead: str, with_: str = "", cluster: str | None = None,
            fenced: bool = False, break_lock: bool = False) -> None:
    """Make a spare a member in DEAD's place (edit the cluster file first); timed."""
    if not with_:
        raise Exit("error: name the spare: hbdeploy replace DEAD --with SPARE", code=2)
    enlist(c, cluster, dead=dead, spare=with_, fenced=fenced, break_lock=break_lock)


@post_task
@reports_errors
def _drill_run(c: Context) -> None:
    model, connections, options = take(c)
    targets = match_targets(model, connections)
    if not options["yes"]:
        answer = input("The drill takes the node holding a resource group away on purpose: "
                       "its floating IP moves. Continue? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("drill: not confirmed (give --yes to run it without asking)", code=1)
    breaker = restorer = None
    if options["cut"]:
        from .lab import Lab

        lab = Lab()
        lab_ips = {m.ip: m.name for m in lab.machines()}

        def lab_name(target) -> str:
            if target.node.ip not in lab_ips:
                raise Exit(f"error: --cut works on lab nodes only; {target.host} is not one",
                           code=2)
            return lab_ips[target.node.ip]

        def breaker(target) -> None:
            lab.cut(lab_name(target))

        def restorer(target) -> None:
            lab.heal(lab_name(target))

    with lock.holding([t.remote for t in targets], "drill", break_lock=options["break_lock"]):
        result = run_drill(model, targets, options["group"], breaker, restorer)
    print(f"drill: group {result.group}: failover {result.failover:.1f}s "
          f"({result.holder} -> {result.spare}), unanswered {result.unanswered:.1f}s"
          + (f", back on {result.holder} after {result.restored:.1f}s"
             if result.restored is not None else ""))


@task(post=[_drill_run], help={
    "cluster": CLUSTER_HELP, "group": "the group to move, by its preferred node (default: first)",
    "yes": "do not ask for confirmation",
    "cut": "lab only: cut the holder's link instead of stopping heartbeat",
    "break_lock": BREAK_LOCK_HELP})
@reports_errors
def drill(c: Context, cluster: str | None = None, group: str | None = None, yes: bool = False,
          cut: bool = False, break_lock: bool = False) -> None:
    """Failover drill: take the holder away, time the failover, bring it back."""
    enlist(c, cluster, group=group, yes=yes, cut=cut, break_lock=break_lock)


@task(name="generate", positional=["file"],
      help={"file": "the new password file (must not exist; written with mode 0600)"})
@reports_errors
def password_generate(c: Context, file: str) -> None:
    """Write a random 40-character password to a new 0600 FILE (never printed)."""
    try:
        path = secret.generate(file)
    except FileExistsError:
        raise Exit(f"error: {file} exists; hbdeploy never overwrites a password file "
                   "(remove it first, or choose another name)", code=2) from None
    except OSError as exc:
        raise Exit(f"error: cannot write {file}: {exc.strerror}", code=2) from None
    print(f"wrote a new password to {path} (mode 0600, {secret.GENERATED_LENGTH} characters); "
          f"point the cluster file at it: password_file: {path}")


@task(iterable=["node", "service"], auto_shortflags=False, help={
    "node": "a node as NAME=IP, NAME as `uname -n` prints it (repeat: two or more)",
    "floating_ip": "the address clients use, which heartbeat moves (10.0.0.100 or "
                   "10.0.0.100/24)",
    "interface": "the interface heartbeat talks on (default eth0)",
    "ping": "an outside address (a router) to tell a cut-off node by",
    "service": "a service heartbeat starts after the floating IP (repeat for more)",
    "force": "overwrite config/heartbeat.yml and fabfile.py (a password file is kept)",
    "folder": "the ops folder to write into (default: the current one)"})
@reports_errors
def init(c: Context, node: list[str] | None = None, floating_ip: str = "",
         interface: str | None = None, ping: str | None = None,
         service: list[str] | None = None, force: bool = False, folder: str = ".") -> None:
    """Write a commented cluster file, its 0600 password file and fabfile.py: from the flags,
    or from config/moonshine.yml when there are none and the folder has one."""
    where = Path(folder)
    if not node and not floating_ip and (where / scaffold.MOONSHINE).is_file():
        settings, password, notes = scaffold.from_moonshine(where)
        header = (f"hbdeploy cluster file, written by `hbdeploy init` from {scaffold.MOONSHINE}"
                  "\n(hbdeploy reads that one too; this one comes first).")
    else:
        settings = scaffold.from_flags(node or [], floating_ip, interface, ping, service)
        password, notes, header = None, [], ""
    plan = scaffold.plan(where, settings, password, force, notes, header)
    for path in scaffold.write(plan):
        print(f"wrote {path}" + (" (mode 0600, the password: never printed)"
                                 if path.name == scaffold.PASSWORD_FILE.name else ""))
    for note in plan.notes:
        print(f"note: {note}")
    print(config.summary(scaffold.loaded(where)))
    print(f"next: hbdeploy check; fab -H {','.join(settings['nodes'])} deploy "
          f"(keep {scaffold.PASSWORD_FILE} out of version control)")


@post_task
@reports_errors
def _import_run(c: Context) -> None:
    connections, options = take_hosts(c)
    where = Path(options["folder"])
    hosts = adopt.read_hosts(connections)
    adoption = adopt.adopt(hosts)
    key = where / scaffold.PASSWORD_FILE
    if key.exists() and key.read_text().strip() != adoption.password.reveal():
        raise Exit(f"error: {key} exists and holds another password; move it away (hbdeploy "
                   "never overwrites a password file); nothing was written", code=2)
    header = (f"hbdeploy cluster file, imported by `hbdeploy import` from "
              f"{', '.join(h.host for h in hosts)}.")
    plan = scaffold.plan(where, adoption.settings, adoption.password.reveal(),
                         options["force"], adoption.notes, header)
    for path in scaffold.write(plan):
        print(f"wrote {path}" + (" (mode 0600, the key read from authkeys: never printed)"
                                 if path.name == scaffold.PASSWORD_FILE.name else ""))
    cluster = scaffold.loaded(where)
    adopt.compare(hosts, adoption, cluster)
    for line in adopt.describe(adoption):
        print(line)
    print(config.summary(cluster))
    if adoption.unexpressed:
        raise Exit("error: the cluster file cannot express every line above; review them "
                   "before a deploy (it would drop them)", code=1)
    print(f"next: hbdeploy -H {','.join(h.host for h in hosts)} deploy --check "
          "(a file that differs only in comments or order is rewritten without a reload)")


@task(name="import", post=[_import_run], auto_shortflags=False, help={
    "folder": "the ops folder to write into (default: the current one)",
    "force": "overwrite config/heartbeat.yml and fabfile.py (a password file never)"})
@reports_errors
def import_cluster(c: Context, folder: str = ".", force: bool = False) -> None:
    """Adopt a hand-built cluster (-H every node): read its ha.cf, haresources and authkeys
    and write a cluster file, a 0600 password file and fabfile.py; report what differs."""
    enlist(c, None, read_cluster=False, folder=folder, force=force)


def _finish(recap, check: bool) -> None:
    if check:
        return
    print(recap.table())
    for message in recap.messages:
        print(f"error: {message}", file=sys.stderr)
    if recap.failed:
        raise Exit(code=1)


def _build_namespace() -> Collection:
    from .lab.tasks import demo
    from .lab.tasks import namespace as lab_namespace

    return Collection(init, import_cluster, check, render, deploy, status, standby,
                      takeover, bootstrap, decommission, replace, drill, demo,
                      Collection("firewall", firewall_remove),
                      Collection("password", password_generate), lab_namespace)


namespace = _build_namespace()
