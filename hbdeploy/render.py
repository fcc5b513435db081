"""Render ha.cf, haresources and authkeys for one node of a validated cluster."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from . import layout
from .model import Cluster
from .secret import MASK

if TYPE_CHECKING:
    import jinja2

HEADER = "Managed by hbdeploy: local changes are overwritten by the next deploy."
FILES = ("ha.cf", "haresources", "authkeys")
MODES = {"ha.cf": 0o644, "haresources": 0o644, "authkeys": 0o600}


@dataclass(frozen=True)
class RenderedFile:
    """One file's bytes for one node, with the mode it must have."""

    name: str
    content: str
    mode: int
    secret: bool = False
    path: str = ""  # where it goes on the node; heartbeat's files: /etc/ha.d/NAME

    @property
    def remote_path(self) -> str:
        return self.path or f"/etc/ha.d/{self.name}"

    def shown(self) -> str:
        """The content fit to print: the authkeys key is masked."""
        return mask_authkeys(self.content) if self.secret else self.content


def _template_source(name: str) -> str:
    return resources.files("hbdeploy.templates").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _env() -> jinja2.Environment:
    import jinja2  # here, not at import time: see warm()

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template(name: str) -> jinja2.Template:
    """One of the templates shipped in ``hbdeploy.templates``."""
    return _env().get_template(name)


def warm() -> None:
    """Import Jinja2 and compile every template now: a deploy does it while its facts
    probes run on the hosts (Jinja2's import about 25 ms, the compile 10 ms on a lab
    machine), hidden behind the network."""
    for entry in resources.files("hbdeploy.templates").iterdir():
        if entry.name.endswith(".j2"):
            template(entry.name)


def render_node(cluster: Cluster, node_name: str,
                ipfail_path: str = layout.IPFAIL) -> dict[str, RenderedFile]:
    """The three files of ``node_name``, keyed by file name; KeyError for an unknown node."""
    node = cluster.node(node_name)
    peers = [n for n in cluster.nodes if n.name != node.name]
    context = {"cluster": cluster, "node": node, "peers": peers, "header": HEADER,
               "ipfail_path": ipfail_path}
    out = {}
    for name in FILES:
        extra = {"password": cluster.password.reveal()} if name == "authkeys" else {}
        text = template(f"{name}.j2").render(**context, **extra)
        out[name] = RenderedFile(name, text, MODES[name], secret=name == "authkeys")
    return out


def mask_authkeys(text: str) -> str:
    """Replace every key in authkeys text with a mask (for diffs and output)."""
    lines = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit() and not line.lstrip().startswith("#"):
            end = "\n" if line.endswith("\n") else ""
            line = f"{fields[0]} {fields[1]} {MASK}{end}"
        lines.append(line)
    return "".join(lines)
