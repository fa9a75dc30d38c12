"""Checking a kprobe set against a kernel image (``ptreplay/capture/vmlinux.py``).

The images are the fixtures of tests/data/vmlinux-fixture (fixture.c and its
Makefile): ``fixture.o`` defines every function the linux-6.1 set probes and a
``struct kvm_pgtable`` laid out as in 6.1; ``fixture-shifted.o`` moves ``pgd``
from +8 to +16 and makes ``kvm_host_zalloc_pages_exact`` static inline (no
symbol); ``fixture-nodebug.o`` has no DWARF; the ``-linked`` variants are the
same objects linked like vmlinux (ET_EXEC), read through the file mapping.
What each must report follows from fixture.c and the probe set file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptreplay.capture import vmlinux
from ptreplay.capture.catalog import ProbeEntry, ProbeSet, load_probe_set
from ptreplay.capture.probedefs import FetchArg, parse_probe_definition
from ptreplay.capture.vmlinux import ImageCheck, ImageError, check_image, fetch_size
from ptreplay.cli import main

FIXTURES = REPO / "tests" / "data" / "vmlinux-fixture"
CLEAN = ["fixture.o", "fixture-linked"]
SHIFTED = ["fixture-shifted.o", "fixture-shifted-linked"]
SET_61 = REPO / "schemas" / "kprobes" / "linux-6.1.txt"

# The members of struct kvm_pgtable the 6.1 set reads through pgt (x0), from the set file itself.
_PGT_MEMBER = re.compile(r"\b(ia_bits|start_level|pgd)=\+\d+\(%x0\)")


def _definition_lines() -> list[str]:
    return [ln for ln in SET_61.read_text().splitlines() if ln.startswith(("p:", "r:"))]


def _events_reading(member: str) -> list[str]:
    """Events of the 6.1 set file with a ``MEMBER=+OFF(%x0)`` argument, in file order."""
    return [ln.split()[0][2:] for ln in _definition_lines() if re.search(rf"\b{member}=\+", ln)]


def _events_of(symbol: str) -> list[str]:
    return [ln.split()[0][2:] for ln in _definition_lines() if ln.split()[1] == symbol]


def _check(name: str) -> ImageCheck:
    return check_image(FIXTURES / name, load_probe_set("6.1"))


def _probe_set(*lines: str) -> ProbeSet:
    entries = tuple(ProbeEntry(parse_probe_definition(ln), ln, (), i)
                    for i, ln in enumerate(lines, 1))
    return ProbeSet("6.1", Path("test"), (), entries)


@pytest.mark.parametrize("name", CLEAN)
def test_the_61_set_fits_the_fixture(name: str) -> None:
    result = _check(name)
    assert result.problems == ()
    assert result.fits
    lines = _definition_lines()
    assert result.probes == len(lines)
    assert result.functions == len({ln.split()[1] for ln in lines})
    assert result.members_checked == sum(len(_PGT_MEMBER.findall(ln)) for ln in lines) == 14
    assert result.summary() == (
        f"{FIXTURES / name}: the {len(lines)} kprobes of the Linux 6.1 set fit "
        f"({result.functions} functions found, 14 member offsets and sizes match the DWARF)")
    # The fixture is built for x86-64: said, not an error.
    assert any("x64" in n for n in result.notes)


@pytest.mark.parametrize("name", SHIFTED)
def test_shifted_pgd_and_inlined_function_are_reported(name: str) -> None:
    result = _check(name)
    assert not result.fits
    offsets = [p for p in result.problems if p.what == "member offset"]
    assert [p.probe for p in offsets] == _events_reading("pgd")
    for p in offsets:
        assert (p.expected, p.found) == ("struct kvm_pgtable.pgd at +8", "+16")
        assert p.arg == "pgd=+8(%x0):x64"
    missing = [p for p in result.problems if p.what == "function missing"]
    assert [p.probe for p in missing] == _events_of("kvm_host_zalloc_pages_exact")
    assert {p.found for p in missing} == {"none (inlined or not built)"}
    assert len(result.problems) == len(offsets) + len(missing)
    assert result.summary().endswith(
        f"{len(offsets) + len(missing)} of the {len(_definition_lines())} kprobes of the Linux "
        f"6.1 set do not fit (function missing: {len(missing)}, member offset: {len(offsets)})")
    assert missing[0].line() == (
        "kvm_host_zalloc_pages_exact: function missing: expected a function symbol "
        "kvm_host_zalloc_pages_exact, found none (inlined or not built)")


def test_without_dwarf_offsets_are_not_checked() -> None:
    result = _check("fixture-nodebug.o")
    assert result.fits and result.members_checked == 0
    assert "no DWARF (.debug_info): member offsets not checked" in result.notes
    assert "member offsets not checked" in result.summary()


def test_the_preferred_unit_is_searched_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmlinux, "_PREFERRED_UNITS", {"kvm_pgtable": ("fixture.c",)})
    for name in CLEAN:
        assert _check(name).members_checked == 14
    assert [p.found for p in _check("fixture-shifted-linked").problems][:1] == ["+16"]


def test_register_and_size_come_from_the_probe() -> None:
    probes = _probe_set(
        # pgt in x1: its members are read through x1; x2 is not a known pointer.
        "p:a kvm_pgtable_stage2_map pgt=%x1:x64 pgd=+8(%x1):x64 start_level=+4(%x1):u64",
        "p:b kvm_pgtable_stage2_unmap pgt=%x0 pgd=+8(%x2):x64 ia_bits=+0(%x0):u32[2]",
        # a name that is not a member is not checked; an offset past the member is.
        "p:c kvm_pgtable_stage2_flush pgt=%x0 level=+4(%x0):u32 mmu=+16(%x0):x64",
        "p:d fixture_sink",
    )
    result = check_image(FIXTURES / "fixture.o", probes)
    assert [(p.probe, p.what, p.expected, p.found) for p in result.problems] == [
        ("a", "member size", "struct kvm_pgtable.start_level of 8 bytes (u64)", "4 bytes"),
        ("b", "member size", "struct kvm_pgtable.ia_bits of 8 bytes (u32[2])", "4 bytes"),
        ("c", "member offset", "struct kvm_pgtable.mmu at +16", "+24"),
        ("d", "not a function", "a function symbol fixture_sink", "a symbol of type OBJECT"),
    ]
    assert result.members_checked == 4


@pytest.mark.parametrize("arg,size", [
    ("x64", 8), ("u32", 4), ("s8", 1), ("u16[4]", 8), ("b4@2/32", 4), ("string", None),
    ("symbol", 8),
])
def test_fetch_size(arg: str, size: int | None) -> None:
    assert fetch_size(FetchArg("v", "+0(%x0)", arg)) == size


@pytest.mark.parametrize("content,message", [
    (b"", "not an ELF file (starts with b'', expected b'\\x7fELF'), at offset 0"),
    (b"#!/bin/sh\necho\n", "not an ELF file (starts with b'#!/b', expected b'\\x7fELF')"),
    (b"\x7fELF" + b"\xff" * 60, "malformed ELF headers: "),
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 9, "malformed ELF headers: "),
])
def test_garbage_is_an_input_error(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(content)
    with pytest.raises(ImageError) as exc:
        check_image(bad, load_probe_set("6.1"))
    assert exc.value.message().startswith(f"{bad}: {message}")
    assert "\n" not in exc.value.message()


@pytest.mark.parametrize("name", ["fixture.o", "fixture-linked"])
def test_truncated_image(tmp_path: Path, name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ImageError, match="truncated image"):
        check_image(cut, load_probe_set("6.1"))


def test_no_symbol_table(tmp_path: Path) -> None:
    # The section header type of .symtab overwritten (SHT_SYMTAB 2 -> SHT_PROGBITS 1).
    from elftools.elf.elffile import ELFFile

    data = bytearray((FIXTURES / "fixture-nodebug.o").read_bytes())
    with open(FIXTURES / "fixture-nodebug.o", "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab")
        at = elf.header["e_shoff"] + index * elf.header["e_shentsize"] + 4
    assert data[at] == 2
    data[at] = 1
    stripped = tmp_path / "stripped.o"
    stripped.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"no symbol table \(.symtab\)"):
        check_image(stripped, load_probe_set("6.1"))


@pytest.mark.parametrize("name", ["fixture.o", "fixture-linked"])
def test_broken_dwarf(tmp_path: Path, name: str) -> None:
    from elftools.elf.elffile import ELFFile

    data = bytearray((FIXTURES / name).read_bytes())
    with open(FIXTURES / name, "rb") as f:
        info = ELFFile(f).get_section_by_name(".debug_info")
        start, size = info["sh_offset"], info["sh_size"]
    # Keep the unit header, overwrite the DIEs with an abbreviation code that does not exist.
    data[start + 12:start + size] = b"\x7f" * (size - 12)
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="malformed DWARF: "):
        check_image(bad, load_probe_set("6.1"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot open: No such file or directory"):
        check_image(tmp_path / "nope", load_probe_set("6.1"))


_FUZZ_BASE = (FIXTURES / "fixture.o").read_bytes()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(len(_FUZZ_BASE) // 2, len(_FUZZ_BASE)),
       flips=st.lists(st.tuples(st.integers(0, len(_FUZZ_BASE) - 1), st.integers(0, 255)),
                      max_size=8))
def test_any_damaged_image_is_a_result_or_an_input_error(
        tmp_path: Path, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(_FUZZ_BASE)
    for at, value in flips:
        data[at] = value
    image = tmp_path / "damaged.o"
    image.write_bytes(bytes(data[:cut]))
    try:
        result = check_image(image, load_probe_set("6.1"))
    except ImageError as err:
        assert "\n" not in err.message()
    else:
        assert result.probes == len(_definition_lines())


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize("name,status", [
    ("fixture.o", 0), ("fixture-linked", 0), ("fixture-nodebug.o", 0),
    ("fixture-shifted.o", 1), ("fixture-shifted-linked", 1), ("fixture.c", 2),
])
def test_cli_kprobes_vmlinux(name: str, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    image = FIXTURES / name
    code, out, err = _cli(["capture", "kprobes", "--kernel", "6.1", "--vmlinux", str(image)],
                          capsys)
    assert code == status
    if status == 2:
        assert out == ""
        assert err.startswith(f"ptreplay: error: {image}: not an ELF file") and err.count("\n") == 1
        return
    assert out.splitlines() == load_probe_set("6.1").lines()
    result = _check(name)
    lines = err.splitlines()
    assert lines[-1] == result.summary()
    assert [ln for ln in lines if ": note: " not in ln][:-1] == \
        [f"{image}: {p.line()}" for p in result.problems]


def test_cli_record_refuses_an_image_that_does_not_fit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = FIXTURES / "fixture-shifted.o"
    code, out, err = _cli(["capture", "record", "--kernel", "6.1", "--vmlinux", str(image),
                           "--tracefs", str(tmp_path), "--trace-cmd", str(tmp_path / "tc"),
                           "-o", str(tmp_path / "t.dat"), "--", "true"], capsys)
    assert code == 2 and out == ""
    assert err == (f"ptreplay: error: {_check('fixture-shifted.o').summary()}; not recording "
                   f"(details: ptreplay capture kprobes --kernel 6.1 --vmlinux {image})\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_record_goes_on_when_the_image_fits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Past the image check, the machine check refuses (no tracefs at that path).
    code, _, err = _cli(["capture", "record", "--kernel", "6.1", "--vmlinux",
                         str(FIXTURES / "fixture.o"), "--tracefs", str(tmp_path / "none"),
                         "-o", str(tmp_path / "t.dat"), "--", "true"], capsys)
    assert code == 2 and "not recording" not in err
    assert err.startswith("ptreplay: error: ") and err.count("\n") == 1


def test_no_dwarf_search_for_probes_whose_function_is_missing() -> None:
    # A kernel without KVM: nothing to compare, and its DWARF is not searched at all.
    probes = _probe_set("p:a no_such_function pgt=%x0 pgd=+16(%x0):x64")
    result = check_image(FIXTURES / "fixture-nodebug.o", probes)
    assert [(p.probe, p.what) for p in result.problems] == [("a", "function missing")]
    assert result.members_checked == 0
    assert not any("DWARF" in n for n in result.notes)
