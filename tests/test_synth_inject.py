"""Each injection kind plants one bug where its sidecar says, and nowhere else.

For every kind: the sidecar's event exists in the written trace and is the
event it names, inside the operation it names; the injected trace equals the
clean trace of the same seed up to that event; trace-level kinds differ from
it there only (an event removed, or one event changed); the operations layer
shows the bug at that operation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_helpers import read_back, trace_events

from ptreplay.effects import Get, Pte, Put, Tlbi
from ptreplay.errors import InputError
from ptreplay.synth import KINDS, GenConfig, generate

SEEDS = {"leaked-table": 3, "extra-get": 3, "double-put": 3, "missing-tlbi": 3,
         "wrong-tlbi-level": 3, "missing-invalid-write": 3, "missing-cmo": 3, "wrong-ret": 3,
         "lost-owner": 3}


def _key(e) -> tuple:
    return (e.cpu, e.ts, e.pid, e.name, tuple(sorted(e.fields.items())))


def _pair(tmp_path: Path, kind: str, seed: int, **extra) -> tuple[list, list, dict]:
    pte = KINDS[kind].needs_pte_events
    base = dict(random_ops=1500, seed=seed, pte_events=pte, **extra)
    generate(GenConfig(**base), tmp_path / "clean.dat")
    result = generate(GenConfig(inject=kind, **base), tmp_path / "bug.dat")
    assert result.sidecar is not None
    return (trace_events(tmp_path / "clean.dat"), trace_events(tmp_path / "bug.dat"),
            result.sidecar)


def test_every_kind_is_tested() -> None:
    assert set(SEEDS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_sidecar_points_at_the_planted_bug(tmp_path: Path, kind: str) -> None:
    clean, bug, side = _pair(tmp_path, kind, SEEDS[kind])
    at = side["event"]["index"]
    op = side["operation"]
    ev = bug[at]
    assert ev.name == side["event"]["name"] and ev.fields == side["event"]["fields"]
    assert ev.cpu == side["event"]["cpu"] and ev.pid == side["event"]["pid"]
    assert op["index"] <= at <= op["return_index"]
    assert bug[op["index"]].name == op["func"]
    assert bug[op["return_index"]].name == op["func"] + "__return"
    assert bug[op["index"]].fields["pgt"] == side["root"]["pgt"]
    assert side["kind"] == kind and side["expected_finding"] in side["accepted_findings"]
    assert 0 <= side["candidate"] < side["candidates"]
    # identical up to the planted event
    first = next(i for i, (a, b) in enumerate(zip(clean, bug, strict=False))
                 if _key(a) != _key(b))
    assert first == side.get("removed_at", at)
    level = KINDS[kind].level
    if kind in ("missing-tlbi", "missing-cmo"):
        # exactly one event gone, everything else (timestamps too) the same
        assert len(bug) == len(clean) - 1
        assert [_key(e) for e in bug] == [_key(e) for e in clean[:at] + clean[at + 1:]]
        assert clean[at].name in ("__kvm_tlb_flush_vmid_ipa", "__kvm_tlb_flush_vmid",
                                  "clean_dcache_guest_page", "__flush_dcache_area")
    elif kind in ("wrong-tlbi-level", "wrong-ret"):
        assert len(bug) == len(clean)
        diff = [i for i, (a, b) in enumerate(zip(clean, bug, strict=True))
                if _key(a) != _key(b)]
        assert diff == [at]
        changed = {k for k in ev.fields if ev.fields[k] != clean[at].fields[k]}
        assert changed == ({"level"} if kind == "wrong-tlbi-level" else
                           {"ret"} if "ret" in ev.fields else {"pte"})
    elif kind == "missing-invalid-write":
        # the invalid write is gone and the make now replaces the valid entry directly
        assert len(bug) == len(clean) - 1
        assert ev.name == "stage2_pte_store" and ev.fields["old"] & 1 and ev.fields["new"] & 1
        gone = side["removed_at"]
        assert clean[gone].name == "stage2_pte_store" and clean[gone].fields["new"] == 0
        assert clean[gone].fields["ptep"] == ev.fields["ptep"]
        rest = clean[:gone] + clean[gone + 1:]
        diff = [i for i, (a, b) in enumerate(zip(rest, bug, strict=True))
                if _key(a) != _key(b)]
        assert diff == [at]
        assert bug[at].fields["old"] == clean[gone].fields["old"]
    elif level == "mm":
        assert ev.name in ("kvm_host_get_page", "kvm_s2_put_page") or kind == "leaked-table"
    else:
        assert ev.name in ("kvm_pgtable_stage2_map", "kvm_pgtable_stage2_unmap")


@pytest.mark.parametrize("kind", ["extra-get", "double-put", "leaked-table", "missing-tlbi",
                                  "missing-invalid-write"])
def test_the_operations_layer_shows_the_bug(tmp_path: Path, kind: str) -> None:
    _, _, side = _pair(tmp_path, kind, SEEDS[kind])
    ops = read_back(tmp_path / "bug.dat")
    (op,) = [o for o in ops if o.index == side["operation"]["index"]]
    effects = [e.effect for e in op.effects]
    page = side.get("table")
    if kind == "extra-get":
        gets = [e for e in op.effects if type(e.effect) is Get and e.addr == side["ptep"]]
        assert len(gets) >= 2
    elif kind == "double-put":
        assert effects.count(Put(page, -1)) >= 2
    elif kind == "leaked-table":
        # the table page was emptied, but its own put (addr == page) never came
        assert not [e for e in op.effects if type(e.effect) is Put and e.addr == page]
    elif kind == "missing-tlbi":
        r = side["removed"]
        gone = Tlbi(r["kind"], r["ipa"], r["level"]) if r["kind"] == "vmid_ipa" else Tlbi("vmid")
        (clean_op,) = [o for o in read_back(tmp_path / "clean.dat")
                       if o.index == side["operation"]["index"]]
        assert effects.count(gone) == [e.effect for e in clean_op.effects].count(gone) - 1
    elif kind == "missing-invalid-write":
        stores = [e for e in effects if type(e) is Pte and e.ptep == side["ptep"]]
        assert stores and all(s.new != 0 for s in stores)


def test_injections_are_deterministic_and_seeded(tmp_path: Path) -> None:
    a = generate(GenConfig(random_ops=800, seed=21, inject="missing-tlbi"), tmp_path / "a.dat")
    b = generate(GenConfig(random_ops=800, seed=21, inject="missing-tlbi"), tmp_path / "b.dat")
    c = generate(GenConfig(random_ops=800, seed=22, inject="missing-tlbi"), tmp_path / "c.dat")
    assert (tmp_path / "a.dat").read_bytes() == (tmp_path / "b.dat").read_bytes()
    assert a.sidecar is not None and b.sidecar is not None and c.sidecar is not None
    a.sidecar.pop("trace"), b.sidecar.pop("trace")
    assert a.sidecar == b.sidecar
    assert c.sidecar["event"]["index"] != a.sidecar["event"]["index"]


def test_pte_events_come_on_by_themselves_for_missing_invalid_write(tmp_path: Path) -> None:
    result = generate(GenConfig(random_ops=600, seed=2, inject="missing-invalid-write"),
                      tmp_path / "m.dat")
    assert result.pte_events


@pytest.mark.parametrize("kind,extra,message", [
    ("missing-tlbi", {"vhe": False}, "needs --vhe"),
    ("wrong-tlbi-level", {"vhe": False}, "needs --vhe"),
    ("missing-invalid-write", {"pte_events": False}, "needs --pte-events"),
    ("lost-owner", {"host_stage2": False}, "host stage-2"),
    ("missing-cmo", {"random_ops": 2}, "no place"),
])
def test_impossible_injections_say_why(tmp_path: Path, kind: str, extra: dict,
                                       message: str) -> None:
    config = GenConfig(**{"random_ops": 400, "seed": 1, "inject": kind, **extra})
    with pytest.raises(InputError, match=message):
        generate(config, tmp_path / "x.dat")
