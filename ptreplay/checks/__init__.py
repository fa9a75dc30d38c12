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

from typing import TYPE_CHECKING

from ptreplay.lazy import lazy_exports

if TYPE_CHECKING:  # what the names are, for type checkers and readers
    from ptreplay.checks.casemate_model import CasemateChecker
    from ptreplay.checks.engine import EffectChecker, check_steps
    from ptreplay.checks.findings import KINDS, Finding, Kind
    from ptreplay.checks.stream import Observed, Operation, Step, StreamInfo, read_effect_log

# The package exports, each from its module; loaded on first use so that a
# command importing one checker module does not load them all.
_EXPORTS = {
    "EffectChecker": "engine", "check_steps": "engine",
    "CasemateChecker": "casemate_model",
    "Finding": "findings", "Kind": "findings", "KINDS": "findings",
    "Step": "stream", "Operation": "stream", "Observed": "stream", "StreamInfo": "stream",
    "read_effect_log": "stream",
}
__all__ = ["EffectChecker", "CasemateChecker", "check_steps", "Finding", "Kind", "KINDS",
           "Step", "Operation", "Observed", "StreamInfo", "read_effect_log"]
assert set(__all__) == set(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
