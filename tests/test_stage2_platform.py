"""Platform features and kernel identification, from traces.

Ground truth for the recordings: their kernels' boot logs (``CPU features:
detected:`` lines, l1-info/dmesg-boot.txt.gz) and uname (l1-info/uname.txt).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from test_stage2_corpus import A72, VHE, VHE612, _ops

from ptreplay.effects import Cmo, Put, Tlbi
from ptreplay.stage2.kernels import (
    MODEL_PROFILES,
    identify_kernel,
    profile_name,
    series_from_probes,
)
from ptreplay.stage2.operations import Observed, Operation, TlbFlushRange
from ptreplay.stage2.platform import FEATURES, PlatformEvidence, features_from_dmesg

_index = iter(range(10**9))


def _op(kind: str, effects: tuple[object, ...] = (), ret: int | None = 0, root: int = 0,
        **fields: int) -> Operation:
    i = next(_index)
    op = Operation(kind, f"kvm_pgtable_stage2_{kind}", 0, 1, root=root, entry_fields=fields,
                   ret=ret, index=i, index_return=i)
    op.effects = [Observed(e, i, i, 0) for e in effects]  # type: ignore[arg-type]
    return op


def _evidence(*ops: Operation) -> PlatformEvidence:
    ev = PlatformEvidence()
    for op in ops:
        ev.observe(op)
    return ev


def test_fwb_from_unmaps_and_flushes() -> None:
    put = Put(0x1000, -1)
    clean = Cmo("dcache_clean_inval_poc", 0x2000, 0x1000)
    assert _evidence(_op("unmap", (clean, put))).infer().fwb.value is False
    assert _evidence(_op("flush", (clean,))).infer().fwb.value is False
    many = [_op("unmap", (put,)) for _ in range(16)]
    feat = _evidence(*many).infer().fwb
    assert (feat.value, feat.source, feat.index) == (True, "trace", many[0].index)
    assert _evidence(*many[:3]).infer().fwb.value is None
    # The icache callback is not a data-cache clean.
    icache = Cmo("icache_inval_pou", 0x2000, 0x1000)
    assert _evidence(*many, _op("unmap", (icache, put))).infer().fwb.value is True
    assert _evidence(_op("unmap", (put, TlbFlushRange(0, 0x1000)))).infer().fwb.value is True


def test_hw_af_from_aging() -> None:
    young, old = 0x40000000000745, 0x40000000000345  # valid leaf with / without AF
    ev = _evidence(_op("mkold", ret=young, addr=0x1000), _op("mkold", ret=old, addr=0x2000),
                   _op("mkold", ret=young, addr=0x1000))
    feat = ev.infer().hw_af
    assert feat.value is True and "young again" in feat.evidence
    assert _evidence(_op("mkold", ret=young, addr=0x1000),
                     _op("mkyoung", ret=old, addr=0x1000),
                     _op("mkold", ret=young, addr=0x1000)).infer().hw_af.value is False
    assert _evidence(_op("mkold", ret=young, addr=0x1000)).infer().hw_af.value is None
    # 6.12: test_clear_young(mkold=1) clears, a later young one on the same page shows HW AF.
    assert _evidence(_op("test_clear_young", ret=1, addr=0x1000, size=0x1000, mkold=1),
                     _op("test_clear_young", ret=1, addr=0x1000, size=0x1000, mkold=0)
                     ).infer().hw_af.value is True
    # Other roots' pages do not count.
    assert _evidence(_op("mkold", ret=young, addr=0x1000, root=0),
                     _op("mkold", ret=young, addr=0x1000, root=1)).infer().hw_af.value is None


def test_tlb_range_vhe_and_mc() -> None:
    ranged = _op("unmap", (TlbFlushRange(0, 0x1000), Tlbi("vmid_range", ipa=0, pages=1)))
    assert _evidence(ranged).infer("6.12").tlb_range.value is True
    full = _op("unmap", (TlbFlushRange(0, 0x1000), Tlbi("vmid")))
    assert _evidence(full).infer("6.12").tlb_range.value is False
    assert _evidence().infer("6.1").tlb_range.source == "kernel"
    assert _evidence().infer("6.12").tlb_range.value is None
    assert _evidence(_op("unmap", (Tlbi("vmid_ipa", ipa=0, level=3),))).infer().vhe.value is True
    assert _evidence(*[_op("unmap", (Put(0, -1),)) for _ in range(16)]).infer().vhe.value is False
    maps = [_op("map", mc=0xFFFF000012340000), _op("map", mc=0)]
    assert _evidence(maps[0]).infer().mc.value is True
    assert _evidence(maps[1]).infer().mc.value is False
    feat = _evidence(*maps).infer().mc
    assert feat.value is None and "1 of 2 maps" in feat.evidence


def test_overrides_win_and_say_so() -> None:
    clean = Cmo("dcache_clean_inval_poc", 0x2000, 0x1000)
    feats = _evidence(_op("unmap", (clean,))).infer("6.1", {"fwb": True, "hw_af": None})
    assert feats.fwb.value is True and feats.fwb.source == "override"
    assert "the trace suggests no" in feats.fwb.evidence
    assert feats.hw_af.source == "unknown"
    assert set(feats.values().values()) <= {True, False, None}
    assert list(feats.values()) == list(FEATURES)
    assert len(feats.describe()) == len(FEATURES)
    with pytest.raises(ValueError, match="unknown platform feature 'lpa2'"):
        _evidence().infer(overrides={"lpa2": True})


def _dmesg(folder: str) -> dict[str, bool]:
    require_shared()
    with gzip.open(CORPUS / folder / "l1-info" / "dmesg-boot.txt.gz", "rt") as f:
        return features_from_dmesg(f.read())


def test_dmesg_features_of_the_recordings() -> None:
    assert _dmesg("arm64/vhe-rich-v7") == {"fwb": True, "hw_af": True, "tlb_range": True,
                                           "vhe": True}
    assert _dmesg("arm64-6.12/vhe-rich2-v7")["vhe"] is True
    assert _dmesg("arm64/a72-rich-v7") == {"fwb": False, "hw_af": False, "tlb_range": False,
                                           "vhe": False}
    assert _dmesg("arm64-6.12/nvhe16k-rich-v7")["vhe"] is False


@pytest.mark.parametrize("path,folder,series", [
    (VHE, "arm64/vhe-rich-v7", "6.1"), (A72, "arm64/a72-rich-v7", "6.1"),
    (VHE612, "arm64-6.12/vhe-rich2-v7", "6.12")], ids=["vhe", "a72", "vhe612"])
def test_trace_features_agree_with_the_boot_log(path: Path, folder: str, series: str) -> None:
    """What the trace shows never contradicts the kernel's own boot log."""
    ev = PlatformEvidence()
    for op in _ops(path):
        ev.observe(op)
    feats = ev.infer(series)
    truth = _dmesg(folder)
    decided = {k: v for k, v in feats.values().items() if v is not None and k in truth}
    assert decided == {k: truth[k] for k in decided}
    assert {"fwb", "vhe"} <= set(decided)
    if series == "6.12":
        assert feats.tlb_range.value is True and feats.mc.value is True
    else:
        assert feats.mc.value is None  # change_pte maps pass no memcache, faults do


def _probe_fields(folder: Path) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for f in (folder / "l1-info" / "kprobe_formats").glob("*.format"):
        body = f.read_text().split("\n\n")[1]
        out[f.name.removesuffix(".format")] = [
            (m.group(1).split()[-1], int(m.group(2)))
            for m in re.finditer(r"field:(.*?);\toffset:\d+;\tsize:(\d+);", body)]
    return out


@pytest.mark.parametrize("folder,series", [
    ("arm64/vhe-rich-v7", "6.1"), ("arm64/a72-rich-raw", "6.1"),
    ("arm64-6.12/vhe-rich2-v7", "6.12"), ("arm64-6.12/nvhe16k-rich-v7", "6.12")])
def test_identify_the_recordings(folder: str, series: str) -> None:
    require_shared()
    d = CORPUS / folder
    uname = (d / "l1-info" / "uname.txt").read_text()
    fields = _probe_fields(d)
    by_layout = identify_kernel(probe_fields=fields)
    assert by_layout.series == series and by_layout.evidence == (
        f"probe layout matches Linux {series} only",)
    info = identify_kernel(uname, fields)
    assert info.series == series and info.release == uname.split()[2]
    if series == "6.1":
        assert (info.sublevel, info.profile, info.covered) == (192, "linux-6.1", True)
        assert info.message() == "Linux 6.1.192 (6.1.0-56-arm64): profile linux-6.1"
    else:
        assert info.sublevel == 117 and not info.covered
        assert info.profile == ("linux-6.12-16k" if "16k" in folder else "linux-6.12")
        assert "no model profile covers it" in info.message()
        assert identify_kernel(uname, fields, profiles=MODEL_PROFILES + (info.profile,)).covered


def test_trace_cmd_uname_option_and_ambiguous_layouts() -> None:
    """trace-cmd's UNAME option has no Debian version; maps alone fit several kernels."""
    info = identify_kernel("Linux (none) 6.1.0-56-arm64 aarch64")
    assert (info.series, info.sublevel, info.profile) == ("6.1", 0, "linux-6.1")
    map_only = {"kvm_pgtable_stage2_map": ["pgt", "addr", "size", "phys", "prot", "mc",
                                           "ia_bits", "start_level", "pgd"]}
    matching, _ = series_from_probes(map_only)
    assert matching == ["5.13", "5.15", "6.1"]
    info = identify_kernel(probe_fields=map_only)
    assert info.series is None and "ambiguous" in info.evidence[0]
    assert "choose a profile with --profile" in info.message()
    info = identify_kernel("4.19.0-20-arm64")
    assert info.profile == "linux-4.19" and not info.covered
    wrong = identify_kernel("6.12.117+deb12-arm64", map_only)
    assert "not 6.12" in wrong.evidence[1]
    assert profile_name("6.12", 16384) == "linux-6.12-16k" and profile_name("6.1") == "linux-6.1"
