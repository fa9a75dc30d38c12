"""Capturing stage-2 traces: event schemas per kernel series, format text, the capture kit.

* :mod:`ptreplay.capture.probedefs` parses ``kprobe_events`` definition lines;
* :mod:`ptreplay.capture.formats` produces the exact ``format`` text the kernel
  shows for a probe event or a tracepoint (and the binary field layout);
* :mod:`ptreplay.capture.catalog` loads ``schemas/`` per kernel series;
* :mod:`ptreplay.capture.probe_effects` says which effect probe event shows
  which effect (read both ways: trace -> effects, ``ptreplay gen`` effects -> events);
* :mod:`ptreplay.capture.record` installs the probes and runs ``trace-cmd record``;
* :mod:`ptreplay.capture.vmlinux` checks a probe set against a kernel image
  (function symbols; ``struct kvm_pgtable`` member offsets from DWARF).
"""
