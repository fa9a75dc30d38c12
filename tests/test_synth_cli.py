"""The gen command: it writes what it says, and bad options or scenarios are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synth_helpers import trace_events

from ptreplay.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gen_writes_a_trace_and_a_summary(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.dat"
    code, stdout, err = _run(["gen", "-o", str(out), "--random", "300", "--seed", "4"], capsys)
    assert code == 0 and err == ""
    assert stdout.startswith(f"{out}: ") and "300 operations" in stdout
    assert len(trace_events(out)) > 300


def test_gen_writes_the_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.dat"
    side = tmp_path / "where.json"
    code, stdout, _ = _run(["gen", "-o", str(out), "--random", "800", "--seed", "4",
                            "--inject", "double-put", "--sidecar", str(side), "-q"], capsys)
    assert code == 0 and stdout == ""
    data = json.loads(side.read_text())
    assert data["kind"] == "double-put" and data["trace"] == str(out)
    assert data["root"]["pgt"].startswith("0xffff")  # addresses in hex
    assert isinstance(data["event"]["index"], int)
    ev = trace_events(out)[data["event"]["index"]]
    assert ev.name == data["event"]["name"] == "kvm_s2_put_page"
    assert f"{ev.fields['addr']:#x}" == data["event"]["fields"]["addr"]
    # the default sidecar name
    code, _, _ = _run(["gen", "-o", str(out), "--random", "800", "--seed", "4", "--inject",
                       "wrong-ret", "-q"], capsys)
    assert code == 0 and json.loads(Path(str(out) + ".inject.json").read_text())["kind"] \
        == "wrong-ret"


def test_gen_runs_a_scenario_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    text = ('{"op":"init","ia_bits":40}\n'
            '{"op":"map","addr":"0x40000000","size":"0x1000","phys":"0x50000000",'
            '"prot":["R","W"]}\n{"op":"dump"}\n{"op":"destroy"}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    out = tmp_path / "s.dat"
    code, stdout, _ = _run(["gen", "-o", str(out), "-", "--file-version", "6"], capsys)
    assert code == 0 and "3 operations" in stdout


@pytest.mark.parametrize("args,message", [
    (["gen", "--random", "10"], "no output file"),
    (["gen", "-o", "{out}"], "give a scenario file or --random N"),
    (["gen", "-o", "{out}", "--random", "10", "{scenario}"], "one of them"),
    (["gen", "-o", "{out}", "--random", "1"], "at least 2 operations"),
    (["gen", "-o", "{out}", "--random", "ten"], "--random: expected an integer"),
    (["gen", "-o", "{out}", "--random", "10", "--seed", "x"], "--seed: expected an integer"),
    (["gen", "-o", "{out}", "--random", "10", "--inject", "bogus"], "unknown injection"),
    (["gen", "-o", "{out}", "--random", "10", "--profile", "linux-4.19"], "unknown profile"),
    (["gen", "-o", "{out}", "--random", "10", "--file-version", "5"], "6 or 7"),
    (["gen", "-o", "{out}", "--random", "10", "--file-version", "6", "--compression", "zstd"],
     "not compressed"),
    (["gen", "-o", "{out}", "--random", "10", "--compression", "lz4"], "unknown compression"),
    (["gen", "-o", "{out}", "--random", "10", "--cpus", "0"], "--cpus"),
    (["gen", "-o", "{out}", "--random", "10", "--vms", "0"], "--vms"),
    (["gen", "-o", "{out}", "--random", "10", "--start-level", "1"], "needs --ia-bits"),
    (["gen", "-o", "{out}", "--random", "10", "--ia-bits", "99"], "out of range"),
    (["gen", "-o", "{out}", "--random", "10", "--ia-bits", "20"], "geometry"),
    (["gen", "-o", "{out}", "--random", "50", "--inject", "missing-tlbi", "--nvhe"],
     "needs --vhe"),
    (["gen", "-o", "{out}", "--random", "50", "--inject", "lost-owner", "--no-host-stage2"],
     "host stage-2"),
    (["gen", "-o", "{out}", "--random", "2", "--inject", "missing-cmo"], "no place"),
    (["gen", "-o", "{out}", "{missing}"], "cannot open"),
    (["gen", "-o", "{dir}", "--random", "10"], "is a directory"),
    (["gen", "-o", "{dir}/no/such/dir/t.dat", "--random", "10"], "cannot write"),
    (["gen", "-o", "{out}", "{bad_json}"], "not a JSON object: Expecting property name"),
    (["gen", "-o", "{out}", "{bad_op}"], "map before init (no live page table), at line 1"),
    (["gen", "-o", "{out}", "{bad_field}"], "map: prot: unknown prot \"Q\""),
    (["gen", "-o", "{out}", "{bad_number}"], "map: addr: bad number 'zz', at line 2"),
    (["gen", "-o", "{out}", "{two_inits}"],
     "init while a page table is live (destroy it first), at line 2"),
    (["gen", "-o", "{out}", "{binary}"], "not UTF-8"),
])
def test_bad_options_and_scenarios_are_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    files = {
        "scenario": '{"op":"init"}\n{"op":"destroy"}\n',
        "bad_json": '{"op":"init"}\n{"op":"map",\n',
        "bad_op": '{"op":"map","addr":0,"size":4096,"phys":0,"prot":["R"]}\n',
        "bad_field": '{"op":"init"}\n{"op":"map","addr":0,"size":4096,"phys":0,"prot":["Q"]}\n',
        "bad_number": '{"op":"init"}\n{"op":"map","addr":"zz","size":1,"phys":0,"prot":[]}\n',
        "two_inits": '{"op":"init"}\n{"op":"init"}\n',
    }
    names = {"out": str(tmp_path / "o.dat"), "missing": str(tmp_path / "nope.jsonl"),
             "dir": str(tmp_path)}
    for key, text in files.items():
        p = tmp_path / f"{key}.jsonl"
        p.write_text(text)
        names[key] = str(p)
    (tmp_path / "binary.jsonl").write_bytes(b'{"op":"init"}\n\xff\xfe\n')
    names["binary"] = str(tmp_path / "binary.jsonl")
    code, stdout, err = _run([a.format(**names) for a in args], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ptreplay: error: "), err
    assert message in err, err
    assert "Traceback" not in err
