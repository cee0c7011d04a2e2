"""Running a stage: the runner, shards, shapes, streaming, checkpoints, preflight checks."""
