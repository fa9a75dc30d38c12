"""Where ptreplay's declarative schemas (the top-level ``schemas/`` folder) are."""

from __future__ import annotations

from pathlib import Path


def schemas_dir() -> Path:
    """Return the ``schemas/`` folder: installed package data, else the source checkout."""
    try:
        from importlib.resources import files

        installed = Path(str(files("ptreplay.schemas")))
        if installed.is_dir():
            return installed
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "schemas"
