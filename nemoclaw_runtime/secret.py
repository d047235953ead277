"""A value that must never be shown: tokens and API keys.

``Secret`` has no ``__str__`` that reveals it; ``repr`` and ``str`` print ``'***'``. Code that truly needs the value
(the container env, an ``Authorization`` header, a registry login) calls :meth:`Secret.reveal` at that one spot.
"""

from __future__ import annotations

REDACTED = "***"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickled into a cache or a log by accident
        raise TypeError("Secret values are not serialisable")
