"""kura_perf: load tests and evaluates the Kura pipeline."""
