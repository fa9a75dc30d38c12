"""Package exports that are imported on first use (PEP 562).

A command that needs one module of a package should not pay for importing
all of them: a package lists its exports with the module each lives in, and
:func:`lazy_exports` gives it the module ``__getattr__`` that imports them
when they are first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` for ``exports`` (name -> submodule name)."""
    namespace = vars(import_module(package))

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
