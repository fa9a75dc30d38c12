"""The ``ptreplay`` console script: a fast lane for ``events`` and ``info``, typer for the rest.

Importing typer and click costs 40-50 ms, more than trace-cmd needs to print
a whole small trace. So :func:`main` first tries to read the command line as
a plain ``ptreplay events ...`` or ``ptreplay info ...`` invocation
(:func:`parse_fast`) and, if it is one, runs the command body directly
(:mod:`ptreplay.showtrace`, which the typer commands call as well). Anything
else (``--help``, another command, an unknown or malformed option, a value
that would need conversion, ``--``) goes to the typer application
(:func:`ptreplay.cli.main`), which parses it again and prints the usage
errors. The fast lane accepts a strict subset of what click accepts and
gives each accepted option the value click would give it;
tests/test_console_fast.py runs a list of command lines both ways and
compares output, errors and exit codes byte for byte. The entry point is
:func:`run` (``main`` plus a quick exit after success).
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "run", "parse_fast"]

# Per command: options taking a value (long and short spelling -> parameter),
# flags (spelling -> (parameter, value)), the parameters that collect repeats,
# the allowed values of choice parameters, and the defaults.
_COMMANDS: dict[str, dict] = {
    "events": {
        "values": {"--event": "event", "-e": "event", "--cpu": "cpu", "-c": "cpu",
                   "--buffer": "buffer", "-B": "buffer", "--format": "fmt", "-f": "fmt"},
        "flags": {"--usec": ("usec", True), "-u": ("usec", True)},
        "multiple": {"event", "cpu"},
        "ints": {"cpu"},
        "choices": {"fmt": ("raw", "json")},
        "defaults": {"event": None, "cpu": None, "buffer": None, "fmt": "raw", "usec": False},
    },
    "info": {
        "values": {"--format": "fmt", "-f": "fmt"},
        "flags": {"--count": ("count", True), "--no-count": ("count", False)},
        "multiple": set(),
        "ints": set(),
        "choices": {"fmt": ("text", "json")},
        "defaults": {"fmt": "text", "count": True},
    },
}


def parse_fast(argv: list[str]) -> tuple[str, dict] | None:
    """``(command, parameters)`` for a plain ``events``/``info`` command line, else None.

    ``parameters`` are the keyword arguments of :func:`ptreplay.showtrace.run_events`
    or :func:`~ptreplay.showtrace.run_info` (``trace`` included). None means "let
    typer parse it": it never guesses.
    """
    if not argv or argv[0] not in _COMMANDS:
        return None
    spec = _COMMANDS[argv[0]]
    values: dict[str, str] = spec["values"]
    flags: dict[str, tuple[str, bool]] = spec["flags"]
    params = dict(spec["defaults"])
    positional: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if arg == "-":
                return None
            positional.append(arg)
            continue
        if arg in flags:
            name, flag_value = flags[arg]
            params[name] = flag_value
            continue
        if arg.startswith("--"):
            opt, eq, value = arg.partition("=")
            if opt not in values:
                return None  # --help, --, unknown options, --flag=value
            if not eq:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
        else:
            opt, value = arg[:2], arg[2:]
            if opt not in values:
                return None  # -h, unknown or combined short flags
            if not value:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
        if value.startswith("-"):
            return None  # click would take it as the value; leave such lines to it
        name = values[opt]
        if name in spec["ints"]:
            if not value.isdigit() or not value.isascii():
                return None
            converted: object = int(value)
        else:
            converted = value
        if name in spec["multiple"]:
            params[name] = (params[name] or []) + [converted]
        else:
            params[name] = converted
    for name, allowed in spec["choices"].items():
        if params[name] not in allowed:
            return None
    if len(positional) != 1:
        return None
    params["trace"] = positional[0]
    return argv[0], params


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``); returns after a
    fast-lane command, exits (``sys.exit``) otherwise."""
    args = sys.argv[1:] if argv is None else list(argv)
    fast = parse_fast(args)
    if fast is None:
        from ptreplay.cli import main as typer_main

        typer_main(argv)
        return
    command, params = fast
    from ptreplay import showtrace
    from ptreplay.errors import run_command

    body = showtrace.run_events if command == "events" else showtrace.run_info
    run_command(lambda: body(**params))


def run() -> None:
    """The console script (and ``python -m ptreplay``): :func:`main`, then a quick exit.

    When a fast-lane command has succeeded its output is flushed and its trace
    closed; the interpreter's teardown (freeing every object and module one
    by one) would add 4-9 ms to a command that takes 60-80 ms, so the process
    ends right there, as mypy's does. Errors, and everything typer runs, end
    through ``sys.exit`` as usual.
    """
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
