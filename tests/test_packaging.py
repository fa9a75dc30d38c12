"""The installed package finds its schemas/ folder and its console script runs.

The tests run from the checkout, where ``import ptreplay`` finds the source
tree; the subprocesses below run from an empty folder so that they import the
installed package (what ``pip install .`` put in site-packages), which is what
a user runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

from ptreplay.resources import schemas_dir


def _installed(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          cwd=tmp_path)


def test_schemas_dir_is_found():
    assert (schemas_dir() / "README.md").is_file()
    assert (schemas_dir() / "kprobes" / "linux-6.1.txt").is_file()


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "ptreplay", "--help"], capture_output=True,
                         text=True, check=True)
    assert "Usage" in out.stdout


def test_the_installed_package_has_its_schemas(tmp_path: Path):
    r = _installed(tmp_path, "-c", "import ptreplay.resources as r; print(r.schemas_dir())")
    assert r.returncode == 0, "ptreplay is not installed (pip install '.[test]'):\n" + r.stderr
    where = Path(r.stdout.strip())
    assert (where / "kprobes" / "linux-6.1.txt").is_file(), where
    assert (where / "tracepoints" / "kvm.json").is_file(), where
    assert (where / "report.schema.json").is_file(), where


def test_the_installed_tool_runs_the_readme_command(tmp_path: Path):
    trace = REPO / "traces" / "stage2-missing-tlbi.dat"
    r = _installed(tmp_path, "-m", "ptreplay", "check", str(trace), "--quiet")
    assert r.returncode == 1, r.stderr
    assert "error[bbm-missing-tlbi]" in r.stdout
    assert "Traceback" not in r.stderr


def test_packages_load_their_modules_on_first_use(tmp_path: Path):
    # the CLI registers every command but loads the synth writer and the checker stack
    # only when a command runs; the package names still resolve
    code = ("import sys, ptreplay.cli\n"
            "lazy = [m for m in ('ptreplay.synth.gen', 'ptreplay.checks.engine') "
            "if m in sys.modules]\n"
            "import ptreplay.checks as c, ptreplay.synth as s\n"
            "assert c.EffectChecker.__module__ == 'ptreplay.checks.engine'\n"
            "assert s.generate.__module__ == 'ptreplay.synth.gen'\n"
            "try:\n    c.nothing\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n"
            "print(lazy)\n")
    r = _installed(tmp_path, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
