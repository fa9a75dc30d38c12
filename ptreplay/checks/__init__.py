"""Checkers: find the bugs in a stream of stage-2 operations and effects.

* :mod:`~ptreplay.checks.stream` -- what the checkers consume: :class:`Step`
  (an operation, its effects, optional observed effects), :class:`Operation`,
  :class:`Observed`, :class:`StreamInfo`; :func:`read_effect_log`;
* :mod:`~ptreplay.checks.engine` -- :class:`EffectChecker`, the checker stack
  for effect streams (effect logs, ``ptreplay model run``, replayed traces);
* :mod:`~ptreplay.checks.casemate_model` -- :class:`CasemateChecker`, the same
  checks on casemate logs plus casemate's software-discipline rules;
* :mod:`~ptreplay.checks.maps` -- ownership and mapping maps of the shadow tables;
* :mod:`~ptreplay.checks.findings` -- :class:`Finding` and the catalogue :data:`KINDS`;
* :mod:`~ptreplay.checks.inputs` -- input kinds for the CLI (detection, running).

The checkers rebuild page-table state from the stream itself
(:mod:`~ptreplay.checks.shadow`), never from the model's internals.
"""

from __future__ import annotations

from ptreplay.checks.casemate_model import CasemateChecker
from ptreplay.checks.engine import EffectChecker, check_steps
from ptreplay.checks.findings import KINDS, Finding, Kind
from ptreplay.checks.stream import Observed, Operation, Step, StreamInfo, read_effect_log

__all__ = ["EffectChecker", "CasemateChecker", "check_steps", "Finding", "Kind", "KINDS",
           "Step", "Operation", "Observed", "StreamInfo", "read_effect_log"]
