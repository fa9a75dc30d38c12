"""Checkers: find the bugs in a stream of stage-2 operations and effects.

* :mod:`ptreplay.checks.stream` -- what the checkers consume (Step, Operation);
* :mod:`ptreplay.checks.engine` -- :class:`EffectChecker`, the checker stack for
  effect streams (effect logs, ``ptreplay model run``, replayed traces);
* :mod:`ptreplay.checks.casemate_model` -- the same checks on casemate logs,
  plus casemate's software-discipline rules;
* :mod:`ptreplay.checks.maps` -- ownership and mapping maps of the shadow tables;
* :mod:`ptreplay.checks.findings` -- Finding and the catalogue of finding kinds.
"""
