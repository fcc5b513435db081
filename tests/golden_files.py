"""Write (or check) the golden files: `python tests/golden_files.py` rewrites them."""

from __future__ import annotations

from pathlib import Path

from hbdeploy import source, validate
from hbdeploy.render import render_node

GOLDEN = Path(__file__).resolve().parent / "golden"


def cases() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if (p / "cluster.yml").is_file())


def rendered(case: Path) -> dict[Path, str]:
    cluster = validate.load(source.read(case / "cluster.yml"), environ={})
    out = {}
    for node in cluster.node_names:
        for name, f in render_node(cluster, node).items():
            out[case / node / name] = f.content
    return out


if __name__ == "__main__":
    for case in cases():
        for path, content in rendered(case).items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(path)
