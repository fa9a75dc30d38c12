"""ptreplay: replay arm64 KVM stage-2 page-table traces through a model of pgtable.c.

The command line (``ptreplay``) is a thin layer over the library:

* :mod:`ptreplay.trace` opens trace-cmd ``trace.dat`` files and raw tracefs copies
  and iterates their events lazily;
* :mod:`ptreplay.model` is the model of ``arch/arm64/kvm/hyp/pgtable.c``;
* :mod:`ptreplay.effects` is the vocabulary of page-table side effects shared by
  the model, the trace decoders and the checkers.
"""

__version__ = "0.1.0"
