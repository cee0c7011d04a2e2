"""Files on disk or an object store: atomic writes, locations, locks, stage outputs."""
