"""Errors raised by hbdeploy; every one carries a message fit for an operator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in a cluster file: where it is and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"config error: {self.path}: {self.message}" if self.path else (
            f"config error: {self.message}"
        )


class HbdeployError(Exception):
    """Base of every error hbdeploy reports without a traceback."""


class ConfigError(HbdeployError):
    """The cluster file is missing, unreadable or invalid; lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
