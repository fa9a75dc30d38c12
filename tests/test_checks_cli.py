"""``ptreplay check``, ``ptreplay diff`` and ``ptreplay maps`` on real inputs: exit codes,
formats, stdin, errors as one line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFORMANCE, ORACLE, require_shared

LOGS = CONFORMANCE / "casemate" / "logs"


def ptreplay(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptreplay", *args], input=stdin,
                          capture_output=True, timeout=120)


def _oracle(profile: str, name: str) -> Path:
    require_shared()
    return ORACLE / "expected" / profile / f"{name}.jsonl.gz"


def test_clean_effect_log_exits_0():
    out = ptreplay("check", str(_oracle("linux-6.1", "08_split_2m_block")), "--quiet")
    assert out.returncode == 0, out.stderr
    assert b"clean (48 events checked, effects, linux-6.1)" in out.stdout


def test_findings_exit_1_and_stdin_works(tmp_path):
    lines = gzip.open(_oracle("linux-6.1", "14_unmap_pages_free_tables"), "rt").read()
    lines = lines.splitlines()
    i = next(n for n, line in enumerate(lines) if '"ptep":"0x40003010","old":"0x400' in line)
    del lines[i + 1]                                    # the TLBI after the break
    out = ptreplay("check", "-", "--format", "json", stdin=("\n".join(lines) + "\n").encode())
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["summary"]["by_kind"] == {"bbm-missing-tlbi": 1}
    assert report["findings"][0]["line"] == i + 1
    assert report["input"] == "-"


def test_casemate_log_sarif_to_a_file(tmp_path):
    require_shared()
    target = tmp_path / "r.sarif"
    out = ptreplay("check", str(LOGS / "bad_no_bbm.log"), "--format", "sarif", "-o", str(target))
    assert out.returncode == 1 and out.stdout == b""
    results = json.loads(target.read_text())["runs"][0]["results"]
    assert results[0]["ruleId"] == "bbm-valid-to-valid"


def test_profile_changes_the_verdict():
    path = str(_oracle("linux-5.13", "14_unmap_pages_free_tables"))
    out = ptreplay("check", path, "--profile", "linux-5.13", "--format", "json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["summary"]["by_kind"] == {"tlbi-wrong-level": 2}


@pytest.mark.parametrize("args,data,what", [
    (["check", "-"], b"hello\n", b"cannot tell what kind of input this is"),
    (["check", "-"], b"", b"empty input"),
    (["check", "-"], b"\x17\x08\x44tracing6\x00", b"not as a stream: give its file name"),
    (["check", "-", "--input", "casemate"], b'{"op":"init"}\n', b"casemate parse error"),
    (["check", "-"], b'{"op":"init","ret":0}\n{"ev":"bogus"}\n', b"at line 2"),
    (["check", "-"], b'(lock 1 0 10 "a:1")\r\n', b"at line 1"),
    (["check", "/nonexistent/x.log"], None, b"cannot open"),
    # sizes in the input never make ptreplay allocate what the input cannot justify
    (["check", "-"], b'(mem-init 1 0 0 ffffffffffff "a:1")\n', b"more than 262144 pages"),
    (["check", "-"], b'(mem-set 1 0 0 1000000000 5 "a:1")\n', b"more than 8192 pages"),
    (["check", "-"], b'(mem-set 1 0 8 1000 5 "a:1")\n', b"must be page-aligned"),
    (["check", "-"], b'{"op":"init","ret":0}\n{"ev":"alloc","pa":"0x0","size":"0x1000000000"}\n',
     b"more than 1024 pages, at line 2"),
    (["check", "-"], b'{"op":"init","ret":0}\n{"ev":"alloc","pa":"0x0","size":"0x2000"}\n'
     b'{"ev":"info","ia_bits":40,"start_level":1,"pgd_pages":99999,"vtcr":"0x0"}\n',
     b"impossible geometry"),
    (["diff", "/nonexistent/a.json", "/nonexistent/b.json"], None, b"cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(args, data, what):
    out = ptreplay(*args, stdin=data)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ptreplay: error: ")
    assert what in out.stderr
    assert b"Traceback" not in out.stderr


def test_diff_exit_codes(tmp_path):
    require_shared()
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    assert ptreplay("check", str(LOGS / "good_bbm.log"), "--format", "json",
                    "-o", str(good)).returncode == 0
    assert ptreplay("check", str(LOGS / "bad_bbm_missing_tlbi.log"), "--format", "json",
                    "-o", str(bad)).returncode == 1
    out = ptreplay("diff", str(good), str(bad))
    assert out.returncode == 1 and b"1 new, 0 fixed, 0 unchanged" in out.stdout
    out = ptreplay("diff", str(bad), str(good), "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout)["summary"]["fixed"] == 1
    assert ptreplay("diff", str(bad), str(bad)).returncode == 0


def test_maps_at_an_event():
    path = str(_oracle("linux-6.1", "21_set_owner_back_to_host"))
    out = ptreplay("maps", path, "--at", "16", "--layout", "owners")   # line 17: both set
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "0x0000000000001000-0x0000000000003000         8K owner 1" in text
    out = ptreplay("maps", path, "--layout", "ptdump", "--at", "12")
    assert out.stdout.decode().startswith("---[ Guest IPA ]---\n")
    out = ptreplay("maps", path)          # the table was destroyed by then
    assert b"no live page table" in out.stdout
    assert ptreplay("maps", path, "--root", "zz").returncode == 2


@pytest.mark.parametrize("command", ["check", "diff", "maps"])
def test_help_has_an_example(command):
    out = ptreplay(command, "--help")
    assert out.returncode == 0
    assert b"Example" in out.stdout and b"ptreplay " + command.encode() in out.stdout
