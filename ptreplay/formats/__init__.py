"""Readers (and writers) of ptreplay's inputs: trace files, effect logs, casemate logs."""
