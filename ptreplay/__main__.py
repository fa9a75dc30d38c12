"""``python -m ptreplay`` runs the command line (the same entry as the console script)."""

from ptreplay.console import run

run()
