"""The installed package finds its schemas/ folder and its console script runs."""

from __future__ import annotations

import subprocess
import sys

from ptreplay.resources import schemas_dir


def test_schemas_dir_is_found():
    assert (schemas_dir() / "README.md").is_file()


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "ptreplay", "--help"], capture_output=True,
                         text=True, check=True)
    assert "Usage" in out.stdout
