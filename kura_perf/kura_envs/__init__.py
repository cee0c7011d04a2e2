"""Kura from a spec (a release, a checkout, a commit), each in its own cached environment; the runs in
those environments, side by side and bisected (kura_perf/experiments/versions.py). No Dagster here."""
