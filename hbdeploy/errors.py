"""Errors raised by hbdeploy; every one carries a message fit for an operator."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.@:/-]+")


def key_text(key: object) -> str:
    """A key as it appears in a key path: plain when safe, quoted when odd (spaces, newlines)."""
    text = str(key)
    return text if isinstance(key, str | int) and _PLAIN_KEY.fullmatch(text) else repr(key)


def key_path(*parts: object) -> str:
    """Join key path parts with dots; the first part is trusted (already a path)."""
    head, *rest = [p for p in parts if p != ""] or [""]
    return ".".join([str(head), *(key_text(p) for p in rest)]) if rest else str(head)


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
