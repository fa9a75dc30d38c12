"""``python -m ptreplay`` runs the command line."""

from ptreplay.cli import main

main()
