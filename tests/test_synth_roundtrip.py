"""gen -> trace.dat -> operations layer gives back exactly what the model did.

For random workloads (both profiles, platform variants, hypothesis over seeds
and shapes) and for every oracle scenario: the operations, their arguments
and return values, and every visible effect (with its exact address and mmu)
read back from the written file equal the generator's record of the model's
calls; the driver that runs the model for gen makes the same calls as
``ptreplay model run`` (the model's own scenario runner).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import ORACLE, require_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth_helpers import read_back, round_trip, trace_events

from ptreplay.capture.probe_effects import COUNT_NOT_OBSERVED, PageCount
from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Pte, Put, Tlbi
from ptreplay.model.profiles import get_profile
from ptreplay.model.scenario import ScenarioRunner, init_settings, iter_scenario
from ptreplay.stage2.kernels import identify_kernel
from ptreplay.stage2.platform import features_from_dmesg
from ptreplay.synth import GenConfig, generate
from ptreplay.synth.driver import Stage2Driver
from ptreplay.synth.kernel import LINEAR_OFFSET
from ptreplay.synth.memory import BumpAllocator
from ptreplay.synth.scenario import ScenarioWorkload
from ptreplay.trace import open_trace

PROFILES = ("linux-6.1", "linux-5.13")


def _scenarios() -> list[Path]:
    require_shared()
    found = sorted((ORACLE / "scenarios").glob("*.jsonl"))
    assert len(found) >= 40
    return found


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("platform", [
    {}, {"vhe": False, "hw_af": False}, {"fwb": True, "pte_events": True},
    {"vms": 3, "cpus": 4, "host_stage2": False}])
def test_random_workloads_read_back_as_generated(tmp_path: Path, profile: str,
                                                  platform: dict) -> None:
    config = GenConfig(profile=profile, random_ops=1500, seed=11, **platform)
    result, made, ops = round_trip(config, tmp_path / "r.dat")
    assert result.operations == 1500
    kinds = {o.kind for o in ops}
    assert {"init", "map", "unmap", "mkold", "destroy"} <= kinds
    if platform.get("host_stage2", True):
        assert "set_owner" in kinds
    effects = {type(e.effect) for o in ops for e in o.effects}
    assert {Alloc, Get, Put, PageCount, Free} <= effects
    assert (Tlbi in effects) == platform.get("vhe", True)
    assert (Pte in effects) == bool(platform.get("pte_events"))
    if not platform.get("hw_af", True):
        assert "mkyoung" in kinds
    assert not result.warnings


def _big(path: Path) -> bool:
    """The oracle's long random scenarios (9xx_random_seed*): ~100,000 events each."""
    return path.name.startswith("9")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_oracle_scenario_reads_back(tmp_path: Path, profile: str) -> None:
    """Every scenario with linux-6.1 (the long random ones without entry stores, to keep
    this fast); the others with linux-5.13 too."""
    for path in _scenarios():
        if profile == "linux-5.13" and _big(path):
            continue
        lines = path.read_text().splitlines()
        config = GenConfig(profile=profile, scenario=lines, scenario_name=path.name,
                           pte_events=not _big(path))
        result, made, ops = round_trip(config, tmp_path / f"{path.stem}.dat")
        kernel_calls = sum(1 for op in iter_scenario(lines, path.name)
                           if op.op not in ("dump",))
        assert result.operations <= kernel_calls


def _observed(effects: list, offset: int) -> list:
    """Model effects (PAs) in the form a probe sees them, for the ones a probe shows."""
    out = []
    for e in effects:
        t = type(e)
        if t is Pte:
            out.append(Pte(e.ptep + offset, e.old, e.new))
        elif t is Tlbi:
            out.append(e)
        elif t is Cmo:
            out.append(Cmo(e.kind, e.pa + offset, e.size))
        elif t is Alloc:
            out.append(Alloc(e.pa + offset, e.size))
        elif t is AllocFail:
            out.append(e)
        elif t is Free and e.size is not None:
            out.append(Free(e.pa + offset, e.size))
        elif t in (Get, Put):
            out.append(t(e.pa + offset, COUNT_NOT_OBSERVED))
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_the_driver_calls_the_model_as_model_run_does(profile: str) -> None:
    """With the oracle's allocator, gen's driver makes the calls ptreplay model run makes,
    effect for effect (plus the page_count queries only gen records)."""
    prof = get_profile(profile)
    for path in _scenarios():
        if profile == "linux-5.13" and _big(path):
            continue
        lines = path.read_text().splitlines()
        runner = ScenarioRunner(prof)
        expected = []
        for op in iter_scenario(lines, path.name):
            calls_kernel = op.op != "dump" and not (
                op.op == "init" and init_settings(op, prof) is None)
            _, effects = runner.run(op)
            if calls_kernel:
                expected.append(_observed(list(effects), LINEAR_OFFSET))
        driver = Stage2Driver(prof, random.Random(0), pages=BumpAllocator())
        workload = ScenarioWorkload(lines, path.name, driver, prof)
        got = []
        for call in workload:
            result = driver.run(call)
            workload.done(call, result)
            got.append([s.effect for s in result.seen if type(s.effect) is not PageCount])
        assert got == expected, path.name


def test_kernel_and_platform_can_be_told_from_the_trace(tmp_path: Path) -> None:
    for profile, series in (("linux-6.1", "6.1"), ("linux-5.13", "5.13")):
        path = tmp_path / f"{series}.dat"
        generate(GenConfig(profile=profile, random_ops=300, seed=3, fwb=True, vhe=False,
                           hw_af=False), path)
        with open_trace(path) as t:
            uname = t.info.uname
            probe_fields = {}
            for i in t.formats.ids():
                f = t.formats.get(i)
                if f.system == "kprobes":
                    probe_fields[f.name] = [(x.name, x.size) for x in f.fields]
            notes = "\n".join(e.fields["buf"] for e in t.events(names=["print"]))
        info = identify_kernel(uname, probe_fields, 4096)
        assert info.series == series and info.profile == profile and info.covered
        assert features_from_dmesg(notes) == {"fwb": True, "hw_af": False,
                                              "tlb_range": False, "vhe": False}


def test_same_seed_same_bytes_other_seed_other_trace(tmp_path: Path) -> None:
    paths = [tmp_path / "a.dat", tmp_path / "b.dat", tmp_path / "c.dat"]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        generate(GenConfig(random_ops=400, seed=seed), path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_timestamps_increase_and_tasks_share_cpus(tmp_path: Path) -> None:
    path = tmp_path / "t.dat"
    generate(GenConfig(random_ops=2000, seed=8, cpus=3), path)
    evs = trace_events(path)
    ts = [e.ts for e in evs]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert {e.cpu for e in evs} == {0, 1, 2}
    assert len({e.pid for e in evs}) >= 6
    # calls on different CPUs overlap now and then: an entry inside another task's call
    open_calls: dict[int, str] = {}
    overlapped = False
    for e in evs:
        if e.name.startswith("kvm_pgtable_stage2_") and not e.name.endswith("__return"):
            overlapped |= any(pid != e.pid for pid in open_calls)
            open_calls[e.pid] = e.name
        elif e.name.startswith("kvm_pgtable_stage2_") and e.name.endswith("__return"):
            open_calls.pop(e.pid, None)
    assert overlapped


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), n=st.integers(2, 400),
       profile=st.sampled_from(PROFILES), vms=st.integers(1, 4), cpus=st.integers(1, 4),
       host=st.booleans(), fwb=st.booleans(), hw_af=st.booleans(), vhe=st.booleans(),
       pte=st.booleans(), version=st.sampled_from([(6, None), (7, None), (7, "zstd")]))
def test_property_any_workload_reads_back(tmp_path: Path, seed: int, n: int, profile: str,
                                          vms: int, cpus: int, host: bool, fwb: bool,
                                          hw_af: bool, vhe: bool, pte: bool,
                                          version: tuple) -> None:
    config = GenConfig(profile=profile, random_ops=n, seed=seed, vms=vms, cpus=cpus,
                       host_stage2=host, fwb=fwb, hw_af=hw_af, vhe=vhe, pte_events=pte,
                       version=version[0], compression=version[1])
    result, made, ops = round_trip(config, tmp_path / f"p{seed}_{n}.dat")
    assert result.operations == n
    inits = [o for o in ops if o.kind == "init"]
    destroys = [o for o in ops if o.kind == "destroy"]
    assert len(inits) == len(destroys) >= 1 and all(o.ret == 0 for o in inits)


@pytest.mark.parametrize("fwb,vhe,hw_af", [(True, False, False), (False, True, True)])
def test_the_events_themselves_show_the_platform(tmp_path: Path, fwb: bool, vhe: bool,
                                                 hw_af: bool) -> None:
    """Without the marker notes, the operations layer's platform inference finds FWB, VHE
    and the missing hardware AF in what the events show."""
    from ptreplay.stage2.platform import PlatformEvidence

    path = tmp_path / "p.dat"
    generate(GenConfig(random_ops=3000, seed=12, fwb=fwb, vhe=vhe, hw_af=hw_af,
                       markers=False), path)
    evidence = PlatformEvidence()
    for op in read_back(path):
        evidence.observe(op)
    found = evidence.infer("6.1").values()
    assert found["fwb"] is fwb and found["vhe"] is vhe
    # without hardware AF the kernel handles access faults (mkyoung); with it nothing is
    # simulated, but a page aged, unmapped and faulted back in looks young again
    assert found["hw_af"] in ((None, True) if hw_af else (False,))


def test_long_calls_written_while_they_run_give_the_same_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Destroys and memslot-wide calls go out in pieces (memory stays bounded); the file is
    the one written with each call whole, and it still reads back as generated."""
    from ptreplay.synth import gen as gen_module
    from ptreplay.synth.recorder import Recorder

    monkeypatch.setattr(Recorder, "__init__", _small_spill(Recorder.__init__))
    config = GenConfig(random_ops=1200, seed=3, pte_events=True)
    round_trip(config, tmp_path / "streamed.dat")
    monkeypatch.setattr(gen_module._Run, "stream_long_calls", False)
    generate(config, tmp_path / "whole.dat")
    assert (tmp_path / "streamed.dat").read_bytes() == (tmp_path / "whole.dat").read_bytes()


def _small_spill(init):  # type: ignore[no-untyped-def]
    def patched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        init(self, *args, **kwargs)
        self.spill_at = 16
    return patched
