"""The README's promises: its first two commands and its library example work."""

from __future__ import annotations

import contextlib
import io
import os
import re

from conftest import REPO

from ptreplay.cli import main

README = (REPO / "README.md").read_text()


def _first_commands() -> list[str]:
    lines = [ln.strip() for ln in README.splitlines()[1:] if ln.strip()]
    return lines[:2]


def test_readme_starts_with_the_install_and_check_command_then_the_test_command() -> None:
    run, test = _first_commands()
    assert run.startswith("pip install . && ptreplay check traces/")
    assert test == "pip install '.[test]' && pytest"
    trace = run.split("ptreplay check ", 1)[1]
    assert (REPO / trace).is_file()


def test_the_first_command_shows_a_finding(capsys) -> None:
    trace = _first_commands()[0].split("ptreplay check ", 1)[1]
    code = 0
    try:
        main(["check", str(REPO / trace), "--quiet"])
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"error\[[a-z-]+\] event \d+", out)


def test_the_library_example_runs() -> None:
    code = README.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"trace.dat"', repr(str(REPO / "traces" / "stage2-clean.dat")))
    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("7 ")
    assert len(lines) > 1 and "'ipa':" in lines[1]
