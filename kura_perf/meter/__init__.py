"""Measuring a block of work. No Dagster import: the core can be measured anywhere."""

from kura_perf.meter.api import ApiCounters
from kura_perf.meter.meter import Measurement, Meter

__all__ = ["ApiCounters", "Measurement", "Meter"]
