"""Small value classes for the read path, without :mod:`dataclasses`.

``ptreplay events`` on a small trace has to finish in the time trace-cmd
takes (about 80 ms), and importing :mod:`dataclasses` costs about 10 ms
(it imports :mod:`inspect`), plus about 0.5 ms per decorated class. The
records the trace reader makes (trace metadata, event formats, events)
therefore derive from these two bases and spell out ``__slots__`` and
``__init__``; the bases add what ``@dataclass`` would: equality and repr
over ``_fields``, and for :class:`Frozen` immutability and a hash.
"""

from __future__ import annotations

__all__ = ["Value", "Frozen"]


class Value:
    """Equality and repr over the attributes named in ``_fields`` (unhashable, like a
    mutable dataclass)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


class Frozen(Value):
    """A :class:`Value` whose attributes cannot change after ``__init__`` (which sets
    them with ``object.__setattr__``); hashable when its values are."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._key())

    def _assign(self, *values: object) -> None:
        """Set the ``__slots__`` in order (for ``__init__``)."""
        names: tuple[str, ...] = self.__slots__  # type: ignore[attr-defined]
        for name, value in zip(names, values, strict=True):
            object.__setattr__(self, name, value)
