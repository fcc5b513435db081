"""Rendered files match the reviewed golden files byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_files import cases, rendered


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_rendering_matches_golden(case: Path) -> None:
    files = rendered(case)
    assert files, "a golden case renders files"
    for path, content in files.items():
        assert path.is_file(), f"missing golden file {path}; run python tests/golden_files.py"
        assert content == path.read_text(encoding="utf-8"), f"{path} differs"


def test_every_golden_file_is_still_rendered() -> None:
    expected = {p for case in cases() for p in case.glob("*/*")}
    produced = {p for case in cases() for p in rendered(case)}
    assert expected == produced


def test_rendering_is_deterministic() -> None:
    for case in cases():
        assert rendered(case) == rendered(case)
