"""From trace events to stage-2 operations: probe pairing, roots, observed effects,
kernel profiles and platform features."""
