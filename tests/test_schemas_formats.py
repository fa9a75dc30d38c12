"""schemas/ and the format text generator against the real kernels' format files.

Ground truth: the ``format`` files the arm64 kernels themselves produced for
the probes and tracepoints of the recordings in ../shared/corpus/arm64
(Debian 6.1.192) and ../shared/corpus/arm64-6.12 (Debian 6.12.117).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from hypothesis import given
from hypothesis import strategies as st

from ptreplay.capture.catalog import (
    UnknownKernelSeries,
    event_format,
    event_schema,
    known_series,
    load_probe_set,
    load_tracepoints,
    parse_kernel_release,
    series_for,
)
from ptreplay.capture.formats import (
    FETCH_TYPES,
    kprobe_fields,
    kprobe_format,
    tracepoint_fields,
    tracepoint_format,
)
from ptreplay.capture.probedefs import (
    FetchArg,
    ProbeDefinition,
    ProbeSyntaxError,
    parse_probe_definition,
)

RECORDINGS_61 = ["vhe-rich-v7", "a72-rich-v7", "a72-rich-raw"]
RECORDINGS_612 = ["vhe-rich2-v7", "nvhe16k-rich-v7", "vhe16k-short-raw"]


def _recordings() -> list[tuple[str, Path]]:
    return [("6.1", CORPUS / "arm64" / r) for r in RECORDINGS_61] + [
        ("6.12", CORPUS / "arm64-6.12" / r) for r in RECORDINGS_612
    ]


def _event_id(text: str) -> int:
    m = re.search(r"^ID: (\d+)$", text, re.M)
    assert m, "format file without an ID line"
    return int(m.group(1))


@pytest.mark.parametrize("series,folder", _recordings(), ids=lambda v: str(v)[-20:])
def test_kprobe_formats_equal_the_kernels_files(series: str, folder: Path) -> None:
    """Each accepted definition of a recording gives that kernel's format file byte for byte."""
    require_shared()
    effective = (folder / "kprobe_events.effective.txt").read_text().splitlines()
    checked = 0
    for line in filter(None, (x.strip() for x in effective)):
        defn = parse_probe_definition(line)
        real = (folder / "l1-info" / "kprobe_formats" / f"{defn.event}.format").read_text()
        assert kprobe_format(defn, _event_id(real), series) == real, defn.event
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("series,folder", _recordings(), ids=lambda v: str(v)[-20:])
def test_schema_probes_give_the_recorded_layout(series: str, folder: Path) -> None:
    """Our schema's definition of every recorded event has the recorded format."""
    require_shared()
    schema = load_probe_set(series).by_event()
    files = sorted((folder / "l1-info" / "kprobe_formats").glob("*.format"))
    assert files
    for f in files:
        real = f.read_text()
        event = f.name.removesuffix(".format")
        assert event in schema, f"{event} recorded, not in schemas/kprobes/linux-{series}.txt"
        assert kprobe_format(schema[event].definition, _event_id(real), series) == real, event


@pytest.mark.parametrize(
    "series,working_set",
    [("6.1", "kprobes.txt"), ("6.12", "kprobes-6.12.txt")],
)
def test_schema_contains_the_working_set(series: str, working_set: str) -> None:
    """Every probe the real recordings requested is in the schema, unchanged."""
    require_shared()
    text = (CORPUS / "arm64" / "capture" / working_set).read_text()
    wanted = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    ours = {e.definition: e.text for e in load_probe_set(series).entries}
    for line in wanted:
        assert parse_probe_definition(line) in ours, line


@pytest.mark.parametrize(
    "series,raw",
    [("6.1", CORPUS / "arm64" / "a72-rich-raw" / "raw" / "events"),
     ("6.12", CORPUS / "arm64-6.12" / "vhe16k-short-raw" / "raw" / "events")],
)
def test_tracepoint_formats_equal_the_kernels_files(series: str, raw: Path) -> None:
    """kvm:* layouts from schemas/tracepoints equal the kernel's format files."""
    require_shared()
    tps = load_tracepoints(series)
    assert len(tps) >= 10
    for name, tp in tps.items():
        real = (raw / tp.system / name / "format").read_text()
        assert tracepoint_format(tp, _event_id(real)) == real, name


def test_raw_copy_kprobe_formats_equal_the_schema() -> None:
    """The raw tracefs copies carry format files too: the same layouts."""
    require_shared()
    for series, raw in [("6.1", CORPUS / "arm64" / "a72-rich-raw" / "raw"),
                        ("6.12", CORPUS / "arm64-6.12" / "vhe16k-short-raw" / "raw")]:
        schema = load_probe_set(series).by_event()
        files = sorted((raw / "events" / "kprobes").glob("*/format"))
        assert len(files) >= 40
        for f in files:
            real = f.read_text()
            assert kprobe_format(schema[f.parent.name].definition, _event_id(real), series) == real


def test_kvm_set_spte_hva_is_gone_in_612() -> None:
    """6.12 removed change_pte: its tracepoint and kvm_set_spte_gfn are not in the 6.12 schema."""
    assert "kvm_set_spte_hva" in load_tracepoints("6.1")
    assert "kvm_set_spte_hva" not in load_tracepoints("6.12")
    assert "kvm_set_spte_gfn" not in load_probe_set("6.12").by_event()


_SOURCE_REF = re.compile(r"[\w/.-]+\.(?:c|h|S)(?::\d+| \((\w+)\))")


@pytest.mark.parametrize("series", ["5.13", "5.15", "6.1", "6.6", "6.12"])
def test_every_definition_names_its_source(series: str) -> None:
    """Each definition sits under a comment citing file:line (or file (function) for 5.13)."""
    ps = load_probe_set(series)
    assert ps.header, "schema file without a header"
    for e in ps.entries:
        block = " ".join(c for c in e.comments if not c.startswith("# ---"))
        assert _SOURCE_REF.search(block), f"{series}: {e.definition.event} has no source reference"
        assert e.definition.symbol in block or e.definition.is_return, e.definition.event


@pytest.mark.parametrize("series", ["5.13", "5.15", "6.1", "6.6", "6.12"])
def test_definitions_follow_aapcs64(series: str) -> None:
    """Arguments come from x0..x7; returns are $retval on their own function; pairs match."""
    entries = load_probe_set(series).entries
    names = {e.definition.event for e in entries}
    for e in entries:
        d = e.definition
        for a in d.args:
            reg = a.register
            if reg is not None:
                assert re.fullmatch(r"x[0-7]", reg), (d.event, a)
            assert all(off >= 0 for off in a.offsets), (d.event, a)
        if d.is_return:
            assert d.event == d.symbol + "__return", d.event
            assert d.symbol in names, f"{d.event} without its entry probe"
            assert all(a.fetch == "$retval" for a in d.args)
        else:
            assert d.event == d.symbol


@pytest.mark.parametrize("series", ["5.13", "5.15", "6.1", "6.6", "6.12"])
def test_stage2_probes_read_the_same_struct_offsets(series: str) -> None:
    """ia_bits @+0, start_level @+4, pgd @+8 of struct kvm_pgtable, from the pgt in x0."""
    for e in load_probe_set(series).entries:
        for a in e.definition.args:
            if a.name in ("ia_bits", "start_level", "pgd"):
                assert a.register == "x0"
                assert a.offsets == ({"ia_bits": 0, "start_level": 4, "pgd": 8}[a.name],)
            if a.name == "start_level":
                assert a.type == ("s8" if series == "6.12" else "u32")


def test_known_series_and_release_parsing() -> None:
    assert known_series() == ("5.13", "5.15", "6.1", "6.6", "6.12")
    rel = parse_kernel_release(
        "Linux (none) 6.1.0-56-arm64 #1 SMP Debian 6.1.192-2 (2026-11-16) aarch64")
    assert (rel.series, rel.sublevel, rel.release) == ("6.1", 192, "6.1.0-56-arm64")
    rel = parse_kernel_release("6.12.117+deb12-arm64-16k")
    assert (rel.series, rel.sublevel, rel.flavour) == ("6.12", 117, "+deb12-arm64-16k")
    assert series_for("6.6") == "6.6"
    assert series_for("5.15.0-91-generic") == "5.15"
    with pytest.raises(UnknownKernelSeries, match="known series: 5.13, 5.15, 6.1, 6.6, 6.12"):
        series_for("4.19.0-20-arm64")
    with pytest.raises(UnknownKernelSeries, match="no kernel version"):
        series_for("arm64")


def test_recordings_uname_gives_their_series() -> None:
    require_shared()
    for series, folder in _recordings():
        assert series_for((folder / "l1-info" / "uname.txt").read_text()) == series


@pytest.mark.parametrize(
    "line,what",
    [
        ("", "expected"),
        ("q:foo foo", "bad probe head"),
        ("p10:foo foo", "maxactive"),
        ("r:foo foo+4 ret=$retval", "offset 0"),
        ("p:foo foo a=%x0:u128", "unknown fetch type"),
        ("p:foo foo a=%x0 a=%x1", "used twice"),
        ("p:foo foo common_pid=%x0", "reserved"),
        ("p:foo foo ret=$retval", "only valid in a return probe"),
        ("p:1foo foo", "bad event name"),
        ("p:foo foo 9a=%x0", "bad argument name"),
        ("p:foo foo+zz", "bad offset"),
        ("p:foo foo a=%x0:u8[65]", "bad array length"),
        ("p:foo foo a=%x0:b9@0/8", "unknown fetch type"),
        ("p:foo foo a=:u8", "no fetch expression"),
    ],
)
def test_bad_definitions_are_rejected(line: str, what: str) -> None:
    with pytest.raises(ProbeSyntaxError, match=what):
        parse_probe_definition(line, "test")


def test_definition_details() -> None:
    d = parse_probe_definition("r10:kprobes/kvm_age_gfn__return kvm_age_gfn young=$retval:u8")
    assert (d.kind, d.maxactive, d.group, d.event, d.symbol) == (
        "r", 10, "kprobes", "kvm_age_gfn__return", "kvm_age_gfn")
    d = parse_probe_definition("p do_sys_open+8 %x0 path=+0(%x1):string c=$comm")
    assert d.event == "p_do_sys_open_8"
    assert [a.name for a in d.args] == ["arg1", "path", "c"]
    assert d.args[0].type == "x64" and d.args[2].type == "string"
    assert d.args[1].register == "x1" and d.args[1].offsets == (0,)
    d = parse_probe_definition("p:g/e f a=+8(+16(%x2)):u32 b=%x3:b4@2/32 c=%x4:s16[3]")
    assert d.args[0].offsets == (8, 16) and d.args[0].register == "x2"
    fields = kprobe_fields(d, "6.1")
    assert [(f.name, f.offset, f.size, f.ctype) for f in fields[1:]] == [
        ("a", 16, 4, "u32"), ("b", 20, 4, "u32"), ("c", 24, 6, "s16")]


def test_array_and_string_rendering_by_series() -> None:
    d = parse_probe_definition("p:e f a=%x0:x64[2] s=+0(%x1):string")
    new = kprobe_format(d, 7, "6.1")
    old = kprobe_format(d, 7, "5.15")
    assert "\tfield:u64 a[];\toffset:16;\tsize:16;\tsigned:0;\n" in new
    assert "\tfield:u64 a[2];\toffset:16;\tsize:16;\tsigned:0;\n" in old
    assert "\tfield:__data_loc char[] s;\toffset:32;\tsize:4;\tsigned:1;\n" in new
    assert new.endswith(
        'print fmt: "(%lx) a={0x%Lx,0x%Lx} s=\\"%s\\"", REC->__probe_ip, REC->a[0], REC->a[1], '
        "__get_str(s)\n")
    with pytest.raises(ValueError, match="char"):
        kprobe_format(parse_probe_definition("p:e f c=%x0:char"), 1, "6.1")
    assert "'%c'" in kprobe_format(parse_probe_definition("p:e f c=%x0:char"), 1, "6.12")


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith("common_") and not n.startswith("__probe"))
_basic = st.sampled_from(sorted(t for t in FETCH_TYPES if t not in ("char",)))
_fetch = st.one_of(
    st.integers(0, 7).map(lambda r: f"%x{r}"),
    st.tuples(st.integers(0, 4096), st.integers(0, 7)).map(lambda t: f"+{t[0]}(%x{t[1]})"),
)


@st.composite
def _definitions(draw: st.DrawFn) -> ProbeDefinition:
    kind = draw(st.sampled_from("pr"))
    names = draw(st.lists(_names, max_size=8, unique=True))
    args = []
    for n in names:
        t = draw(_basic)
        if draw(st.booleans()) and t not in ("string", "ustring", "symstr"):
            t += f"[{draw(st.integers(1, 4))}]"
        fetch = "$retval" if kind == "r" else draw(_fetch)
        args.append(FetchArg(n, fetch, t))
    sym = draw(_names)
    return ProbeDefinition(kind, "kprobes", sym if kind == "p" else sym + "__return", sym, 0, 0,
                           tuple(args))


@given(_definitions(), st.sampled_from(["5.15", "6.1", "6.12"]))
def test_definition_round_trip_and_packing(defn: ProbeDefinition, series: str) -> None:
    """line() parses back to the same definition; fields are packed end to end."""
    assert parse_probe_definition(defn.line()) == defn
    fields = kprobe_fields(defn, series)
    for prev, cur in zip(fields, fields[1:], strict=False):
        assert cur.offset == prev.offset + prev.size
    text = kprobe_format(defn, 1234, series)
    assert text.startswith(f"name: {defn.event}\nID: 1234\nformat:\n")
    assert text.count("\n\n") == 2 and text.endswith("\n")


def test_tracepoint_alignment() -> None:
    tp = load_tracepoints("6.1")["kvm_toggle_cache"]
    assert [(f.name, f.offset, f.size) for f in tracepoint_fields(tp)] == [
        ("vcpu_pc", 8, 8), ("was", 16, 1), ("now", 17, 1)]


@pytest.mark.parametrize("series,folder", [r for r in _recordings() if "raw" not in r[1].name],
                         ids=lambda v: str(v)[-20:])
def test_formats_embedded_in_the_trace_files(series: str, folder: Path) -> None:
    """The format texts inside the recordings' trace.dat (trace-cmd dump --events) are ours."""
    require_shared()
    dump = subprocess.run(["trace-cmd", "dump", "--events", "-i", str(folder / "trace.dat")],
                          check=True, capture_output=True, text=True).stdout
    chunks = ["name: " + c for c in dump.split("\nname: ")[1:]]
    probes = load_probe_set(series).by_event()
    tracepoints = load_tracepoints(series)
    checked = Counter()
    for chunk in chunks:
        name = chunk.split("\n", 1)[0].removeprefix("name: ")
        real = chunk.rstrip("\n") + "\n"
        if name in probes:
            assert kprobe_format(probes[name].definition, _event_id(real), series) == real, name
            checked["kprobes"] += 1
        else:
            assert tracepoint_format(tracepoints[name], _event_id(real)) == real, name
            checked["kvm"] += 1
    assert checked["kprobes"] >= 40 and checked["kvm"] == len(tracepoints)


def test_event_schema_lookup() -> None:
    require_shared()
    real = (CORPUS / "arm64" / "vhe-rich-v7" / "l1-info" / "kprobe_formats" /
            "kvm_pgtable_stage2_map.format").read_text()
    assert event_format("6.1", "kvm_pgtable_stage2_map", 1206) == real
    schema = event_schema("6.12", "kvm_pgtable_stage2_map")
    assert schema.system == "kprobes"
    assert [(f.name, f.offset, f.size) for f in schema.fields][-3:] == [
        ("ia_bits", 68, 4), ("start_level", 72, 1), ("pgd", 73, 8)]
    tp = event_schema("6.1", "kvm_guest_fault")
    assert tp.system == "kvm" and tp.fields[-1].name == "ipa"
    with pytest.raises(KeyError, match="no event 'kvm_set_spte_hva'"):
        event_schema("6.12", "kvm_set_spte_hva")
