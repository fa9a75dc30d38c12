"""Where ptreplay's declarative schemas (the top-level ``schemas/`` folder) are."""

from __future__ import annotations

from pathlib import Path


def schemas_dir() -> Path:
    """Return the ``schemas/`` folder: installed inside the package (setup.py puts it
    at ``ptreplay/schemas``), else the source checkout's top-level ``schemas/``."""
    package = Path(__file__).resolve().parent
    installed = package / "schemas"
    return installed if installed.is_dir() else package.parent / "schemas"
