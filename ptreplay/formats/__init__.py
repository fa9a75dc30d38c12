"""Binary and text readers (and writers) of ptreplay's inputs.

``tracedat/`` (trace-cmd.dat v6/v7), ``ringbuffer`` (ftrace sub-buffer pages),
``eventformat`` / ``printfmt`` (event ``format`` files), ``tracefs`` (raw
copies of tracefs). The public entry point is :func:`ptreplay.trace.open_trace`.
"""
