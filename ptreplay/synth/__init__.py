"""Synthetic stage-2 traces: ``ptreplay gen`` drives the model and writes real trace.dat files.

* :mod:`~ptreplay.synth.kernel` - the synthetic kernel's release, symbols, addresses;
* :mod:`~ptreplay.synth.memory` - the host's page allocator;
* :mod:`~ptreplay.synth.recorder` - mm_ops and effect sink that record what probes see;
* :mod:`~ptreplay.synth.driver` - roots and calls through the model;
* :mod:`~ptreplay.synth.calls` - the calls a workload makes;
* :mod:`~ptreplay.synth.workload` - the random workload; :mod:`~ptreplay.synth.scenario`
  - scenario files as workloads;
* :mod:`~ptreplay.synth.events` - each call's probe events in the kernel's order;
* :mod:`~ptreplay.synth.inject` - injected bugs;
* :mod:`~ptreplay.synth.tracefile` - the trace.dat being written;
* :mod:`~ptreplay.synth.gen` - :func:`generate`, the whole thing.

docs/synth.md describes the event layout, the instrumentation event and the injections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptreplay.lazy import lazy_exports

if TYPE_CHECKING:  # what the names are, for type checkers and readers
    from ptreplay.synth.gen import GenConfig, GenOp, GenResult, generate, platform_lines
    from ptreplay.synth.inject import KINDS

# Loaded on first use: ``ptreplay gen --help`` needs the injection kinds, not the writer.
_EXPORTS = {name: "gen" for name in
            ("GenConfig", "GenOp", "GenResult", "generate", "platform_lines")}
_EXPORTS["KINDS"] = "inject"
__all__ = ["GenConfig", "GenOp", "GenResult", "generate", "platform_lines", "KINDS"]
assert set(__all__) == set(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
