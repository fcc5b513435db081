"""Shared fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(autouse=True)
def _no_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide the password themselves; an exported one must not leak in."""
    monkeypatch.delenv("HBDEPLOY_PASSWORD", raising=False)
    monkeypatch.delenv("HBDEPLOY_CONFIG", raising=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--partition-loops", type=int, default=2, dest="partition_loops",
                     help="how many times the lab's cut/heal and kill -9 tests repeat "
                          "(tests/e2e/test_1b_partitions.py)")
