"""The `kura-perf` command line."""
