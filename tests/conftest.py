"""Shared test fixtures: where the read-only ground truth (../shared) lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The property tests run on hypothesis' fixed examples by default: the same on every
# machine and every run, so a red CI is reproducible and a green one stays green.
# PTREPLAY_HYPOTHESIS=explore draws new examples on each run (for looking for bugs).
settings.register_profile("fixed", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("PTREPLAY_HYPOTHESIS", "fixed"))

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
