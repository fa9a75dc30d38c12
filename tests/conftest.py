"""Shared test fixtures: where the read-only ground truth (../shared) lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
CONFORMANCE = SHARED / "conformance"
ORACLE = CONFORMANCE / "oracle"


def require_shared() -> None:
    """Fail (not skip) when ../shared is missing: CI always has it."""
    if not SHARED.is_dir():
        pytest.fail(f"ground truth not found at {SHARED}", pytrace=False)


@pytest.fixture(scope="session")
def shared() -> Path:
    require_shared()
    return SHARED
