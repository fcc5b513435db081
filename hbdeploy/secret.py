"""A wrapper that keeps the heartbeat password out of output, logs and tracebacks."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

MASK = "********"


class Secret:
    """A string that prints as a mask; call :meth:`reveal` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that writes it (authkeys)."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # never pickle the value by accident
        raise TypeError("a Secret cannot be pickled")


MIN_LENGTH = 16
KNOWN_DEFAULTS = ("insecure!", "1234", "password")  # moonshine_heartbeat's, and the usual
GENERATED_LENGTH = 40


def weakness(secret: Secret) -> str | None:
    """Why the password is weak (without showing it), or None."""
    value = secret.reveal()
    if value.lower() in KNOWN_DEFAULTS:
        return "it is a well-known default"
    if len(value) < MIN_LENGTH:
        return f"it is shorter than {MIN_LENGTH} characters ({len(value)})"
    return None


def random_password() -> str:
    """A new random password of GENERATED_LENGTH characters."""
    alphabet = string.ascii_letters + string.digits + "-_.+=%@"
    return "".join(secrets.choice(alphabet) for _ in range(GENERATED_LENGTH))


def write_new(path: str | os.PathLike[str], value: str) -> Path:
    """Write ``value`` to a NEW file, mode 0600 from its creation; FileExistsError when
    ``path`` exists."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def generate(path: str | os.PathLike[str]) -> Path:
    """Write a new random password to a NEW 0600 file (write_new); it is never shown."""
    return write_new(path, random_password())
