"""trace-cmd.dat option and section ids (``enum tracecmd_option_id``) and the file magic.

Plain constants, kept apart from the Construct schemas (:mod:`.schema`) so
that reading a file does not need Construct.
"""

from __future__ import annotations

__all__ = ["MAGIC", "OPTION_NAMES", "Option", "Section", "SEC_FL_COMPRESS"]

MAGIC = b"\x17\x08\x44tracing"


class Option:
    """Option (and v7 section) ids, ``enum tracecmd_option_id``."""

    DONE = 0
    DATE = 1
    CPUSTAT = 2
    BUFFER = 3
    TRACECLOCK = 4
    UNAME = 5
    HOOK = 6
    OFFSET = 7
    CPUCOUNT = 8
    VERSION = 9
    PROCMAPS = 10
    TRACEID = 11
    TIME_SHIFT = 12
    GUEST = 13
    TSC2NSEC = 14
    STRINGS = 15
    HEADER_INFO = 16
    FTRACE_EVENTS = 17
    EVENT_FORMATS = 18
    KALLSYMS = 19
    PRINTK = 20
    CMDLINES = 21
    BUFFER_TEXT = 22


Section = Option  # v7 sections use the option ids
OPTION_NAMES = {v: k for k, v in vars(Option).items() if k.isupper()}
SEC_FL_COMPRESS = 1
