"""The lab, booted once per test session; the suite fails (not skips) when it cannot start."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from hbdeploy.lab import Lab

LAB_NODES = 3


def report(message: str) -> None:
    print(f"lab: {message}", flush=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    lab = Lab(report=report)
    try:
        lab.up(nodes=LAB_NODES)
    except Exception as exc:  # the reason must reach the test report
        pytest.fail(f"the lab could not start: {exc}", pytrace=False)
    yield lab
    lab.down()
    left = lab.leftovers()
    assert not left, f"lab.down left behind: {left}"


def ssh(lab: Lab, node: str, command: str, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab node through the lab's ssh_config."""
    result = subprocess.run(lab.ssh_command(node, command), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{node}: {command!r} failed: {result.stderr.strip()}")
    return result
