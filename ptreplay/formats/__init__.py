"""Binary and text readers (and writers) of ptreplay's inputs.

``tracedat/`` (trace-cmd.dat v6/v7), ``ringbuffer`` (ftrace sub-buffer pages),
``eventformat`` / ``printfmt`` (event ``format`` files), ``tracefs`` (raw
copies of tracefs), ``casemate`` (casemate-check logs), ``effectlog`` (the
oracle's JSON-lines effect logs). The public entry point for traces is
:func:`ptreplay.trace.open_trace`.
"""
