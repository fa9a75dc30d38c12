"""The effect vocabulary prints exactly the kernel oracle's effect lines."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import ORACLE, require_shared

from ptreplay.effects import effect_from_json, effect_to_json


def _expected_files():
    require_shared()
    return sorted((ORACLE / "expected").glob("*/*.jsonl.gz"))


def test_every_oracle_effect_line_round_trips(shared):
    files = _expected_files()
    assert len(files) > 100
    seen = set()
    for path in files:
        with gzip.open(path, "rt") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                obj = json.loads(line)
                if "ev" not in obj:
                    continue
                seen.add(obj["ev"])
                assert effect_to_json(effect_from_json(obj)) == line, f"{path.name}:{n}"
    # The shipped runs exercise every kernel effect kind.
    assert {"pte", "tlbi", "dsb", "cmo", "alloc", "free", "get", "put", "info", "table"} <= seen


@pytest.mark.parametrize(
    "bad", [{"ev": "nope"}, {"ev": "pte", "ptep": "0x0"}, {"ev": "get", "pa": []}]
)
def test_malformed_effect_lines_are_rejected(bad):
    with pytest.raises((KeyError, ValueError, TypeError)):
        effect_from_json(bad)
