"""Stage-2 traces: from events to operations, and their replay through the model.

* :mod:`~ptreplay.stage2.operations` - probe pairing, roots, observed effects;
* :mod:`~ptreplay.stage2.kernels`, :mod:`~ptreplay.stage2.platform` - which kernel
  profile, which platform features;
* :mod:`~ptreplay.stage2.source` - the events a replay reads, what a trace observes;
* :mod:`~ptreplay.stage2.records`, :mod:`~ptreplay.stage2.feed` - operations as compact
  records, read here or in a reader process;
* :mod:`~ptreplay.stage2.rootmodel` - one root's model (the kernel's table pages,
  unknown state, hardware access flags);
* :mod:`~ptreplay.stage2.compare` - observed against predicted, the merged stream;
* :mod:`~ptreplay.stage2.replay` - the replay driver;
* :mod:`~ptreplay.stage2.checking`, :mod:`~ptreplay.stage2.maps` - the checkers on a
  replay (``ptreplay check``, ``ptreplay replay``).
"""
