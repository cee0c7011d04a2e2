"""Checks on stage records and outputs: regression, budgets, sanity, quality, and baseline pins.

Plain Python, no Dagster: the asset checks in kura_perf/defs/checks.py, the CLI and the tests all
call `evaluate.evaluate_stage` (or the single checks), which also writes every outcome to the
store's check_results table.
"""

from kura_perf.checks.outcome import CheckOutcome

__all__ = ["CheckOutcome"]
