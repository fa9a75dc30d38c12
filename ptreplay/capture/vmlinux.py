"""Check a kprobe set against a kernel image (vmlinux, a .ko or a .o) before recording.

A kprobe definition depends on the kernel build in two ways. The probed
function must be a real function symbol: a function the compiler inlined (or
that is not built) has none, and the kernel refuses the probe. And a fetch
argument such as ``pgd=+8(%x0):x64`` reads a member of the structure a
register points to at an offset written by hand from the source (the comment
block of ``schemas/kprobes/linux-<series>.txt``); another configuration or
compiler may lay the structure out differently. :func:`check_image` reads the
image's ``.symtab`` and, when it has them, its DWARF type descriptions with
pyelftools, and reports every probe that does not fit.

Which register points to which structure comes from the probe itself: an
argument named after a known pointer parameter (:data:`POINTER_ARGS`, ``pgt``
for ``struct kvm_pgtable *``) fetched straight from a register (``pgt=%x0``)
says that register holds that pointer; every other argument of the same probe
written ``+OFF(%x0)`` whose name is a member of the structure is then compared
with the member's ``DW_AT_data_member_location`` and byte size. Arguments whose
name is not a member are not checked.

vmlinux DWARF runs to hundreds of MB: the sections are read through the file
mapping, not copied, the compile units that define the structure are searched
first (``arch/arm64/kvm/hyp/pgtable.c`` for ``struct kvm_pgtable``), only the
top level of each unit is walked, and the search stops once every structure is
found. Relocatable objects (``.o``, ``.ko``) and compressed debug sections go
through pyelftools' own loader, which applies relocations in memory.

Anything pyelftools cannot read (not an ELF, truncated, broken DWARF) is an
:class:`ImageError`: one line, never a traceback.
"""

from __future__ import annotations

import inspect
import io
import mmap
import os
import re
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from ptreplay.capture.catalog import ProbeSet
from ptreplay.capture.probedefs import FetchArg, ProbeDefinition
from ptreplay.errors import InputError

__all__ = [
    "ImageError",
    "ProbeProblem",
    "StructMember",
    "ImageCheck",
    "POINTER_ARGS",
    "check_image",
    "fetch_size",
]

#: Argument names that hold a structure pointer in every probe set: name -> structure tag.
POINTER_ARGS: dict[str, str] = {"pgt": "kvm_pgtable"}

#: The compile units to search first for a structure (path suffixes, after normalisation):
#: the file that implements its functions includes its definition.
_PREFERRED_UNITS: dict[str, tuple[str, ...]] = {
    "kvm_pgtable": ("kvm/hyp/pgtable.c", "kvm/mmu.c"),
}

#: Byte size of each fixed-size fetch type (kernel/trace/trace_probe.c); strings have none.
_FETCH_SIZES = {
    "u8": 1, "s8": 1, "x8": 1, "char": 1,
    "u16": 2, "s16": 2, "x16": 2,
    "u32": 4, "s32": 4, "x32": 4,
    "u64": 8, "s64": 8, "x64": 8, "symbol": 8,
}
_BITFIELD = re.compile(r"b[0-9]+@[0-9]+/(?P<container>[0-9]+)\Z")
#: ``+OFF(%REG)``: one dereference of a register (what is checked against a structure).
_MEMBER_FETCH = re.compile(r"\+(?P<off>0x[0-9a-fA-F]+|[0-9]+)\(%(?P<reg>[A-Za-z0-9_]+)\)\Z")
_REGISTER_FETCH = re.compile(r"%(?P<reg>[A-Za-z0-9_]+)\Z")

_ELF_MAGIC = b"\x7fELF"
_SHF_COMPRESSED = 0x800

#: DWARF sections read through the mapping, and the DWARFInfo parameter each fills.
_LAZY_SECTIONS = {
    ".debug_info": "debug_info_sec",
    ".debug_abbrev": "debug_abbrev_sec",
    ".debug_str": "debug_str_sec",
    ".debug_line_str": "debug_line_str_sec",
    ".debug_str_offsets": "debug_str_offsets_sec",
    ".debug_addr": "debug_addr_sec",
}

# DW_TAGs followed from a member to the type that has its size.
_TYPE_WRAPPERS = frozenset(
    ["DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
     "DW_TAG_atomic_type"]
)


class ImageError(InputError):
    """A kernel image that cannot be read: not an ELF, truncated, no symbol table, broken DWARF."""


@dataclass(frozen=True)
class ProbeProblem:
    """One way a probe does not fit the image.

    :param probe: the probe's event name (``kvm_pgtable_stage2_map__return``).
    :param symbol: the probed function.
    :param what: ``function missing``, ``not a function``, ``member offset`` or ``member size``.
    :param expected: what the probe definition assumes (``a FUNC symbol``, ``+8``, ``8 bytes``).
    :param found: what the image has.
    :param arg: the fetch argument as written (``pgd=+8(%x0):x64``), for member problems.
    """

    probe: str
    symbol: str
    what: str
    expected: str
    found: str
    arg: str | None = None

    def line(self) -> str:
        """One line: ``PROBE: what (ARG): expected E, found F``."""
        where = f" ({self.arg})" if self.arg else ""
        return f"{self.probe}: {self.what}{where}: expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class StructMember:
    """A structure member as the image's DWARF describes it.

    :param name: the member name.
    :param offset: ``DW_AT_data_member_location`` in bytes (None: not a constant).
    :param size: the byte size of its type (None: DWARF does not say).
    """

    name: str
    offset: int | None
    size: int | None


@dataclass(frozen=True)
class ImageCheck:
    """What :func:`check_image` found.

    :param image: the image's file name, as given.
    :param series: the probe set's kernel series.
    :param machine: the image's ELF machine as pyelftools names it (``AArch64``, ``x64``).
    :param probes: the number of probes checked.
    :param functions: the number of distinct probed functions.
    :param members_checked: fetch arguments compared with a DWARF member.
    :param problems: every misfit, in probe-set order.
    :param notes: what was not checked, and why (no DWARF, structure not described, ...).
    """

    image: str
    series: str
    machine: str
    probes: int
    functions: int
    members_checked: int
    problems: tuple[ProbeProblem, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        """True when no probe has a problem."""
        return not self.problems

    def summary(self) -> str:
        """One line: whether the set fits and what was checked."""
        what = f"the {self.probes} kprobes of the Linux {self.series} set"
        if self.fits:
            checked = f"{self.functions} functions found"
            if self.members_checked:
                checked += f", {self.members_checked} member offsets and sizes match the DWARF"
            else:
                checked += ", member offsets not checked"
            return f"{self.image}: {what} fit ({checked})"
        bad = len({p.probe for p in self.problems})
        kinds = Counter(p.what for p in self.problems)
        detail = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
        return f"{self.image}: {bad} of {what} do not fit ({detail})"


def fetch_size(arg: FetchArg) -> int | None:
    """Bytes a fetch argument reads (``x64`` 8, ``u32[4]`` 16, ``b4@2/32`` 4); None: a string."""
    base = arg.base_type
    bitfield = _BITFIELD.match(base)
    size = int(bitfield.group("container")) // 8 if bitfield else _FETCH_SIZES.get(base)
    if size is None:
        return None
    return size * arg.count if arg.count else size


class _SectionStream(io.RawIOBase):
    """A read-only, seekable view of one section of the mapped image (nothing copied)."""

    def __init__(self, data: mmap.mmap, start: int, size: int) -> None:
        super().__init__()
        self._data = data
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + pos < 0:
            raise ValueError("negative seek position")
        self._pos = base + pos
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        chunk = self._data[self._start + self._pos:self._start + end]
        self._pos = end
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def _describe(err: BaseException) -> str:
    """A short, one-line account of what pyelftools (or the file system) raised."""
    text = " ".join(str(err).split())[:160]
    if isinstance(err, OSError):
        return f"cannot read: {err.strerror or text}"
    if isinstance(err, ValueError | struct.error | EOFError) and len(text) > 12:
        return text
    if type(err).__module__.startswith("elftools") and len(text) > 12:
        return text
    return f"{type(err).__name__} {text}".strip()


@contextmanager
def _reading(path: str, part: str) -> Iterator[None]:
    """Turn whatever pyelftools raises on a malformed ``part`` into one :class:`ImageError`."""
    from elftools.common.exceptions import DWARFError, ELFError
    from elftools.construct.core import ConstructError

    try:
        yield
    except InputError:
        raise
    except (ELFError, DWARFError, ConstructError, struct.error, ValueError, KeyError,
            IndexError, AssertionError, NotImplementedError, EOFError, OverflowError,
            UnicodeDecodeError, AttributeError, TypeError, RecursionError, OSError) as err:
        raise ImageError(f"malformed {part}: {_describe(err)}", path) from None


def _check_extents(elf: Any, size: int, path: str) -> None:
    """Refuse an image whose headers point past its end (a truncated copy)."""
    header = elf.header
    end = header["e_shoff"] + header["e_shnum"] * header["e_shentsize"]
    if header["e_shnum"] and end > size:
        raise ImageError(f"section headers end at {end}, past the end of the file "
                         f"({size} bytes): truncated image?", path, offset=header["e_shoff"])
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOBITS":
            continue
        if sec["sh_offset"] + sec["sh_size"] > size:
            raise ImageError(f"section {sec.name or '?'} ({sec['sh_size']} bytes) runs past the "
                             f"end of the file ({size} bytes): truncated image?",
                             path, offset=sec["sh_offset"])


@dataclass
class _Symbol:
    """What the symbol table says about one probed name."""

    functions: set[tuple[Any, int]] = field(default_factory=set)  # (section, value)
    other_types: set[str] = field(default_factory=set)
    undefined: bool = False
    clones: set[str] = field(default_factory=set)


def _read_symbols(elf: Any, names: set[str], path: str) -> dict[str, _Symbol]:
    """Look every name of ``names`` up in ``.symtab`` (one pass over it)."""
    from elftools.elf.sections import SymbolTableSection

    tables = [s for s in elf.iter_sections()
              if isinstance(s, SymbolTableSection) and s["sh_type"] == "SHT_SYMTAB"]
    if not tables:
        raise ImageError("no symbol table (.symtab): a stripped image cannot be checked", path)
    found = {name: _Symbol() for name in names}
    for table in tables:
        for sym in table.iter_symbols():
            name = sym.name
            entry = found.get(name)
            if entry is None:
                # GCC clones (name.isra.0, name.constprop.0, name.part.0): not probeable by name.
                base = name.split(".", 1)[0]
                if base != name and base in found and sym["st_info"]["type"] == "STT_FUNC":
                    found[base].clones.add(name)
                continue
            if sym["st_shndx"] == "SHN_UNDEF":
                entry.undefined = True
            elif sym["st_info"]["type"] == "STT_FUNC":
                entry.functions.add((sym["st_shndx"], sym["st_value"]))
            else:
                entry.other_types.add(sym["st_info"]["type"].removeprefix("STT_"))
    return found


def _symbol_problem(defn: ProbeDefinition, name: str, sym: _Symbol) -> ProbeProblem | None:
    """The problem of a probe's function symbol, if it has one."""
    if sym.functions:
        return None
    expected = f"a function symbol {name}"
    if sym.other_types:
        return ProbeProblem(defn.event, defn.symbol, "not a function", expected,
                            f"a symbol of type {'/'.join(sorted(sym.other_types))}")
    if sym.clones:
        found = (f"only the compiler's clones {', '.join(sorted(sym.clones))} "
                 "(the kernel does not probe them by the plain name)")
    elif sym.undefined:
        found = "only an undefined reference (defined in another object)"
    else:
        found = "none (inlined or not built)"
    return ProbeProblem(defn.event, defn.symbol, "function missing", expected, found)


def _dwarf_info(elf: Any, data: mmap.mmap) -> Any | None:
    """The image's DWARF, or None when it has no ``.debug_info``.

    A linked image's sections are read through the mapping; a relocatable
    object, or compressed sections, go through pyelftools' loader (relocations
    applied in memory: .o and .ko debug sections are small).
    """
    from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

    if elf.get_section_by_name(".debug_info") is None:
        if elf.get_section_by_name(".zdebug_info") is None:
            return None
        return elf.get_dwarf_info(follow_links=False)
    compressed = any(sec["sh_flags"] & _SHF_COMPRESSED for sec in elf.iter_sections()
                     if sec.name.startswith(".debug_"))
    if elf["e_type"] == "ET_REL" or compressed:
        return elf.get_dwarf_info(follow_links=False)
    sections: dict[str, Any] = {}
    for name, param in _LAZY_SECTIONS.items():
        sec = elf.get_section_by_name(name)
        if sec is None:
            continue
        sections[param] = DebugSectionDescriptor(
            stream=cast(IO[bytes], _SectionStream(data, sec["sh_offset"], sec["sh_size"])),
            name=name,
            global_offset=sec["sh_offset"], size=sec["sh_size"], address=sec["sh_addr"])
    params = [p for p in inspect.signature(DWARFInfo).parameters if p.endswith("_sec")]
    config = DwarfConfig(little_endian=elf.little_endian,
                         default_address_size=elf.elfclass // 8,
                         machine_arch=elf.get_machine_arch())
    return DWARFInfo(config=config, **{p: sections.get(p) for p in params})


def _unit_end(cu: Any) -> int:
    """The offset just past a unit in ``.debug_info``."""
    return int(cu.cu_offset + cu["unit_length"] + cu.structs.initial_length_field_size())


def _die_name(die: Any) -> str | None:
    attr = die.attributes.get("DW_AT_name")
    if attr is None:
        return None
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _type_size(die: Any, address_size: int) -> int | None:
    """The byte size of the type a member (or type) DIE refers to."""
    for _ in range(64):  # typedef chains are short; a loop in broken DWARF is not
        if "DW_AT_type" not in die.attributes:
            return None
        die = die.get_DIE_from_attribute("DW_AT_type")
        if "DW_AT_byte_size" in die.attributes:
            return int(die.attributes["DW_AT_byte_size"].value)
        if die.tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_ptr_to_member_type"):
            return address_size
        if die.tag == "DW_TAG_array_type":
            return _array_size(die, address_size)
        if die.tag not in _TYPE_WRAPPERS:
            return None
    return None


def _array_size(die: Any, address_size: int) -> int | None:
    """Element size times the counts of the subranges that follow the array DIE.

    The subranges are read forward from the array DIE (never through
    ``DW_AT_sibling``, which damaged DWARF can point backwards).
    """
    from elftools.dwarf.die import DIE

    element = _type_size(die, address_size)
    if element is None or not die.has_children:
        return None
    total = element
    offset, end = die.offset + die.size, _unit_end(die.cu)
    while offset < end:
        sub = DIE(die.cu, die.stream, offset)
        if sub.is_null():
            return total
        if sub.has_children or sub.tag != "DW_TAG_subrange_type":
            return None
        if "DW_AT_count" in sub.attributes:
            count = sub.attributes["DW_AT_count"].value
        elif "DW_AT_upper_bound" in sub.attributes:
            count = sub.attributes["DW_AT_upper_bound"].value + 1
        else:
            return None  # a flexible array member
        if not isinstance(count, int):
            return None
        total *= count
        offset += sub.size
    return None


def _member_offset(die: Any) -> int | None:
    """``DW_AT_data_member_location`` as a byte offset (a constant, or DW_OP_plus_uconst N)."""
    from elftools.dwarf.dwarf_expr import DWARFExprParser

    attr = die.attributes.get("DW_AT_data_member_location")
    if attr is None:
        bits = die.attributes.get("DW_AT_data_bit_offset")
        return int(bits.value) // 8 if bits is not None else 0  # union members: no location
    if isinstance(attr.value, int):
        return attr.value
    ops = DWARFExprParser(die.cu.structs).parse_expr(attr.value)
    if len(ops) == 1 and ops[0].op_name in ("DW_OP_plus_uconst", "DW_OP_constu"):
        return int(ops[0].args[0])
    return None


def _struct_members(members: list[Any]) -> dict[str, StructMember]:
    """Offsets and sizes of a structure's ``DW_TAG_member`` DIEs."""
    out: dict[str, StructMember] = {}
    for die in members:
        name = _die_name(die)
        if name is not None:
            size = _type_size(die, die.cu["address_size"])
            out[name] = StructMember(name, _member_offset(die), size)
    return out


def _structs_in_unit(cu: Any, wanted: set[str]) -> dict[str, dict[str, StructMember]]:
    """The definitions of the ``wanted`` structure tags at the top level of one unit.

    The unit is read forward, DIE after DIE, keeping the nesting depth (top-level
    DIEs are at depth 1, a structure's members at depth 2); the walk stops once
    every wanted structure has been read.
    """
    found: dict[str, dict[str, StructMember]] = {}
    depth = 0
    current: tuple[str, list[Any]] | None = None
    for die in cu.iter_DIEs():
        if die.is_null():
            depth -= 1
            if depth == 1 and current is not None:
                found[current[0]] = _struct_members(current[1])
                current = None
                if found.keys() >= wanted:
                    break
            continue
        if depth == 1:
            name = _die_name(die)
            if (die.tag == "DW_TAG_structure_type" and die.has_children and name in wanted
                    and name not in found and "DW_AT_declaration" not in die.attributes):
                current = (name, [])
        elif depth == 2 and current is not None and die.tag == "DW_TAG_member":
            current[1].append(die)
        if die.has_children:
            depth += 1
    return found


def _forget_dies(cu: Any) -> None:
    """Drop the DIEs pyelftools cached for a searched unit, so memory stays flat over vmlinux."""
    for attr in ("_dielist", "_diemap"):
        cached = getattr(cu, attr, None)
        if isinstance(cached, list):
            del cached[:]


def _find_structs(dwarf: Any, wanted: set[str]) -> dict[str, dict[str, StructMember]]:
    """Each wanted structure's members, from the first unit that defines it.

    Units whose name ends like a preferred file are searched first (their top
    DIE only is read to learn the name); the others afterwards, in order. The
    search stops once every structure is found.
    """
    preferred = tuple(s for tag in wanted for s in _PREFERRED_UNITS.get(tag, ()))
    found: dict[str, dict[str, StructMember]] = {}
    later: list[Any] = []
    for cu in dwarf.iter_CUs():
        name = _die_name(cu.get_top_DIE()) or ""
        if preferred and os.path.normpath(name).endswith(preferred):
            found.update(_structs_in_unit(cu, wanted - found.keys()))
            _forget_dies(cu)
            if found.keys() >= wanted:
                return found
        else:
            later.append(cu)
    for cu in later:
        found.update(_structs_in_unit(cu, wanted - found.keys()))
        _forget_dies(cu)
        if found.keys() >= wanted:
            break
    return found


def _pointer_registers(defn: ProbeDefinition) -> dict[str, str]:
    """Register -> structure tag, from the probe's own ``pgt=%x0`` arguments."""
    out: dict[str, str] = {}
    for arg in defn.args:
        m = _REGISTER_FETCH.match(arg.fetch)
        if arg.name in POINTER_ARGS and m:
            out[m.group("reg")] = POINTER_ARGS[arg.name]
    return out


def _member_args(defn: ProbeDefinition) -> Iterator[tuple[FetchArg, str, int]]:
    """``(argument, structure tag, offset)`` for each ``+OFF(%reg)`` of a known pointer."""
    registers = _pointer_registers(defn)
    for arg in defn.args:
        m = _MEMBER_FETCH.match(arg.fetch)
        if m and m.group("reg") in registers:
            yield arg, registers[m.group("reg")], int(m.group("off"), 0)


def _member_problems(defn: ProbeDefinition, arg: FetchArg, tag: str, offset: int,
                     member: StructMember) -> list[ProbeProblem]:
    written = f"{arg.name}={arg.fetch}:{arg.type}"
    place = f"struct {tag}.{member.name}"
    problems = []
    if member.offset != offset:
        found = f"+{member.offset}" if member.offset is not None else "a non-constant location"
        problems.append(ProbeProblem(defn.event, defn.symbol, "member offset",
                                     f"{place} at +{offset}", found, written))
    size = fetch_size(arg)
    if size is not None and member.size is not None and size != member.size:
        problems.append(ProbeProblem(defn.event, defn.symbol, "member size",
                                     f"{place} of {size} bytes ({arg.type})",
                                     f"{member.size} bytes", written))
    return problems


def _open_elf(path: Path) -> tuple[Any, Any, mmap.mmap]:
    """Open and map the image; check the magic before pyelftools sees it."""
    from elftools.elf.elffile import ELFFile

    source = str(path)
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by check_image)
    except OSError as err:
        raise ImageError(f"cannot open: {err.strerror or err}", source) from None
    try:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(4)
        if magic != _ELF_MAGIC:
            raise ImageError(f"not an ELF file (starts with {magic!r}, expected {_ELF_MAGIC!r})",
                             source, offset=0)
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        f.seek(0)
        with _reading(source, "ELF headers"):
            elf = ELFFile(f)
            _check_extents(elf, size, source)
    except BaseException:
        f.close()
        raise
    return f, elf, data


def check_image(path: Path, probe_set: ProbeSet) -> ImageCheck:
    """Check every probe of ``probe_set`` against the kernel image at ``path``.

    :param path: a vmlinux, or a .ko / .o: an ELF with ``.symtab`` and, optionally, DWARF.
    :param probe_set: the probe set (:func:`ptreplay.capture.catalog.load_probe_set`).
    :raises ImageError: the file cannot be read as an ELF image with a symbol table.
    """
    source = str(path)
    f, elf, data = _open_elf(path)
    try:
        return _check(elf, data, source, probe_set)
    finally:
        data.close()
        f.close()


def _check(elf: Any, data: mmap.mmap, source: str, probe_set: ProbeSet) -> ImageCheck:
    defs = [e.definition for e in probe_set.entries]
    names = {d.symbol.rpartition(":")[2] for d in defs}
    with _reading(source, "symbol table"):
        symbols = _read_symbols(elf, names, source)
    problems: list[ProbeProblem] = []
    notes: list[str] = []
    with _reading(source, "ELF headers"):
        machine = elf.get_machine_arch()
    if machine != "AArch64":
        notes.append(f"the image is for {machine}, the probe set for arm64 "
                     "(symbols and structure layouts are checked all the same)")
    for name in sorted(names):
        if len(symbols[name].functions) > 1:
            notes.append(f"{len(symbols[name].functions)} functions are named {name}: "
                         "kernels that refuse ambiguous probe points reject its probes")

    # Only the structures read by probes whose function exists: a vmlinux built without
    # KVM has no struct kvm_pgtable either, and searching all its DWARF would take minutes.
    wanted = {tag for d in defs if symbols[d.symbol.rpartition(":")[2]].functions
              for _, tag, _ in _member_args(d)}
    layouts: dict[str, dict[str, StructMember]] = {}
    if wanted:
        with _reading(source, "DWARF"):
            dwarf = _dwarf_info(elf, data)
            layouts = _find_structs(dwarf, wanted) if dwarf is not None else {}
        if dwarf is None:
            notes.append("no DWARF (.debug_info): member offsets not checked")
        else:
            for tag in sorted(wanted - layouts.keys()):
                notes.append(f"the DWARF does not describe struct {tag}: "
                             "its member offsets not checked")

    checked = 0
    for defn in defs:
        name = defn.symbol.rpartition(":")[2]  # MOD:SYM probes SYM of module MOD
        problem = _symbol_problem(defn, name, symbols[name])
        if problem is not None:
            problems.append(problem)
        for arg, tag, offset in _member_args(defn):
            member = layouts.get(tag, {}).get(arg.name)
            if member is None:
                continue
            checked += 1
            problems += _member_problems(defn, arg, tag, offset, member)
    return ImageCheck(
        image=source,
        series=probe_set.series,
        machine=machine,
        probes=len(defs),
        functions=len(names),
        members_checked=checked,
        problems=tuple(problems),
        notes=tuple(notes),
    )
