"""The task collection behind both `hbdeploy` and `fab` (via fabfile.py).

Tasks stay thin: they parse options, call the library and turn its errors into
a one-line message and an exit code, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task

from . import config
from .errors import ConfigError, HbdeployError
from .files import write_atomic
from .render import render_node

F = TypeVar("F", bound=Callable[..., Any])
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

    return wrapper  # type: ignore[return-value]


@task(help={"cluster": CLUSTER_HELP})
@reports_errors
def check(c: Context, cluster: str | None = None) -> None:
    """Validate the cluster file; print a summary or every problem (exit 2)."""
    print(config.summary(config.load_cluster(cluster)))


@task(help={"node": "node to render the files of", "out": "write the files into this folder",
            "cluster": CLUSTER_HELP})
@reports_errors
def render(c: Context, node: str, out: str | None = None, cluster: str | None = None) -> None:
    """Render ha.cf, haresources and authkeys of one node (authkeys masked on stdout)."""
    model = config.load_cluster(cluster)
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


def _build_namespace() -> Collection:
    from .lab.tasks import namespace as lab_namespace

    return Collection(check, render, lab_namespace)


namespace = _build_namespace()
