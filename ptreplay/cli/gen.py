"""``ptreplay gen``: a synthetic stage-2 trace (optionally with one injected bug)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ptreplay.cli.app import app
from ptreplay.errors import InputError, ScenarioError
from ptreplay.synth import KINDS

__all__ = ["gen", "sidecar_json"]

_EPILOG = """\
Examples:

  ptreplay gen -o clean.dat --random 5000 --seed 1

  ptreplay gen -o bug.dat --random 5000 --seed 1 --inject missing-tlbi

  ptreplay gen -o s.dat scenario.jsonl --profile linux-5.13 --file-version 6

  trace-cmd report -R -t clean.dat | diff - <(ptreplay events clean.dat)

--inject writes OUTPUT.inject.json: what was planted and at which event.

Injections: """ + ", ".join(KINDS) + """ (docs/synth.md says what each one is).
"""

_ADDRESS_KEYS = frozenset([
    "pgt", "pgd", "kvm", "mmu", "ipa", "table", "ptep", "va", "old", "new", "addr", "size",
    "phys", "prot", "mc", "vtcr", "flags", "fields", "args"])


def _int(value: str | None, option: str, lo: int = 0, hi: int = 2**63) -> int | None:
    if value is None:
        return None
    try:
        n = int(value, 0)
    except ValueError:
        raise InputError(f"expected an integer, got {value!r}", option) from None
    if not lo <= n <= hi:
        raise InputError(f"{n} is out of range ({lo}..{hi})", option)
    return n


def _hexify(obj: Any, key: str = "") -> Any:
    """Addresses and entry values as "0x..." strings; counts, indices, levels as numbers."""
    if isinstance(obj, dict):
        return {k: _hexify(v, k if key not in ("fields", "args") else key)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hexify(v, key) for v in obj]
    if isinstance(obj, bool) or not isinstance(obj, int):
        return obj
    if key in _ADDRESS_KEYS and obj >= 0:
        return f"{obj:#x}"
    return obj


def sidecar_json(sidecar: dict[str, Any]) -> str:
    """The sidecar file's text (deterministic: keys in a fixed order, addresses in hex)."""
    return json.dumps(_hexify(sidecar), indent=2) + "\n"


@app.command(epilog=_EPILOG, short_help=(
    "Write a synthetic stage-2 trace.dat, "
    "optionally with one planted bug."))
def gen(
    scenario: Annotated[str | None, typer.Argument(
        metavar="[SCENARIO.jsonl]",
        help="oracle scenario to run (see `ptreplay model run`); '-' for stdin")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="the trace.dat to write")] = "",
    random_ops: Annotated[str | None, typer.Option(
        "--random", help="a random workload of N stage-2 operations")] = None,
    seed: Annotated[str, typer.Option("--seed", help="seed of the random workload, addresses, "
                                                     "timing and injection place")] = "0",
    profile: Annotated[str, typer.Option(
        "--profile", "-p", help="model profile and kernel series: linux-6.1, linux-5.13")
    ] = "linux-6.1",
    file_version: Annotated[str, typer.Option("--file-version", help="trace.dat version 7 or 6")
                            ] = "7",
    compression: Annotated[str, typer.Option(
        "--compression", help="v7 compression: zstd (default) or none; v6 is never compressed")
    ] = "auto",
    fwb: Annotated[bool, typer.Option("--fwb/--no-fwb", help="stage-2 FWB (random workloads; "
                                                             "a scenario's init says it)")
                   ] = False,
    hw_af: Annotated[bool, typer.Option("--hw-af/--no-hw-af",
                                        help="hardware access flag (no mkyoung) or not")] = True,
    vhe: Annotated[bool, typer.Option("--vhe/--nvhe",
                                      help="VHE (TLB helpers traced) or nVHE (they run at EL2)")
                   ] = True,
    pte_events: Annotated[bool | None, typer.Option(
        "--pte-events/--no-pte-events",
        help="write ptreplay:stage2_pte_store instrumentation events (default: only when "
             "the injection needs them)")] = None,
    inject: Annotated[str | None, typer.Option("--inject", help="plant one bug of this kind")
                      ] = None,
    sidecar: Annotated[str | None, typer.Option(
        "--sidecar", help="where to write what was planted (default OUTPUT.inject.json)")
    ] = None,
    vms: Annotated[str, typer.Option("--vms", help="guest VMs of a random workload")] = "2",
    host_stage2: Annotated[bool, typer.Option(
        "--host-stage2/--no-host-stage2",
        help="a pKVM-style host stage-2 with owner annotations (random workloads)")] = True,
    cpus: Annotated[str, typer.Option("--cpus", help="CPUs of the synthetic host")] = "2",
    ia_bits: Annotated[str | None, typer.Option(
        "--ia-bits", help="IPA size of every guest (random; default: 40, 44 or 48)")] = None,
    start_level: Annotated[str | None, typer.Option(
        "--start-level", help="start level with --ia-bits (default: the kernel's choice)")
    ] = None,
    markers: Annotated[bool, typer.Option(
        "--markers/--no-markers",
        help="start with trace_marker notes stating the platform (boot-log lines)")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, no summary")
                     ] = False,
) -> None:
    """Generate a synthetic stage-2 trace: run a scenario file or a random workload
    through the model of pgtable.c and write the events the capture kit's probes fire
    on a real kernel (exact probe formats, kernel addresses, several tasks and CPUs)
    as a trace.dat that trace-cmd and ptreplay read. --inject plants one known bug
    and writes a JSON sidecar saying what and where.
    """
    if not output:
        raise InputError("no output file: give -o OUTPUT.dat", "gen")
    n = _int(random_ops, "--random", 0)
    if (scenario is None) == (n is None):
        raise InputError("give a scenario file or --random N (one of them)", "gen")
    version = _int(file_version, "--file-version", 0, 100)
    assert version is not None
    if compression == "auto":
        comp: str | None = "zstd" if version == 7 else None
    elif compression == "none":
        comp = None
    else:
        comp = compression
    geometry = None
    ia = _int(ia_bits, "--ia-bits", 0, 64)
    sl = _int(start_level, "--start-level", 0, 3)
    if sl is not None and ia is None:
        raise InputError("--start-level needs --ia-bits", "--start-level")
    if ia is not None:
        if sl is None:
            sl = 0 if ia >= 44 else 1 if ia >= 35 else 2
        geometry = (ia, sl)
    from ptreplay.synth.gen import GenConfig, generate

    config = GenConfig(
        profile=profile, random_ops=n, seed=_int(seed, "--seed") or 0, version=version,
        compression=comp, fwb=fwb, hw_af=hw_af, vhe=vhe, pte_events=pte_events,
        inject=inject, vms=_int(vms, "--vms", 1, 64) or 1, host_stage2=host_stage2,
        cpus=_int(cpus, "--cpus", 1, 64) or 1, geometry=geometry, markers=markers)
    stream = None
    if scenario is not None:
        if scenario == "-":
            config.scenario = _lines(sys.stdin.buffer, "-")
        else:
            try:
                stream = Path(scenario).open("rb")
            except OSError as err:
                raise InputError(f"cannot open: {err.strerror}", scenario) from None
            config.scenario = _lines(stream, scenario)
        config.scenario_name = scenario
    out = Path(output)
    if out.is_dir():
        raise InputError("is a directory", output)
    progress = None
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=n, unit="op", desc="gen", file=sys.stderr)
        progress = bar.update
    try:
        result = generate(config, out, progress=progress)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", output) from None
    finally:
        if bar is not None:
            bar.close()
        if stream is not None:
            stream.close()
    side_path = None
    if result.sidecar is not None:
        side_path = Path(sidecar) if sidecar else Path(str(out) + ".inject.json")
        try:
            side_path.write_text(sidecar_json(result.sidecar), encoding="utf-8")
        except OSError as err:
            raise InputError(f"cannot write: {err.strerror}", str(side_path)) from None
    if not quiet:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(result.per_op.items()))
        rate = result.operations / result.seconds if result.seconds else 0.0
        print(f"{output}: {result.events} events, {result.operations} operations ({mix}), "
              f"{result.roots} stage-2 roots, {result.seconds:.1f} s ({rate:.0f} ops/s)")
        if result.sidecar is not None:
            s = result.sidecar
            print(f"planted {s['kind']} at event {s['event']['index']} ({s['event']['name']}, "
                  f"in {s['operation']['func']} at event {s['operation']['index']}); "
                  f"expected finding {s['expected_finding']}: {side_path}")


def _lines(stream: Any, source: str) -> list[str]:
    """The scenario's lines, decoded (the number of the first undecodable one)."""
    out = []
    for n, raw in enumerate(stream, 1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ScenarioError("not UTF-8 text", source, line=n) from None
    return out
