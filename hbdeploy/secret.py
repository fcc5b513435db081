"""A wrapper that keeps the heartbeat password out of output, logs and tracebacks."""

from __future__ import annotations

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
