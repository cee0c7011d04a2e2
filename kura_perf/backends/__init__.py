"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from kura_perf.backends.kura import KuraBackend
from kura_perf.backends.protocols import Backend, Prepares, ReportsApiCounters
from kura_perf.backends.reference import ReferenceBackend
from kura_perf.profiles import Profile
from kura_perf.settings.run import RunSettings

__all__ = ["Backend", "Prepares", "ReportsApiCounters", "get_backend"]


def get_backend(profile: Profile, settings: RunSettings) -> Backend:
    """The profile's backend, set up by the run's `settings` (the model cache, the simulator, the
    credentials' names), wrapped as settings.backend_wrapper says. Required: built at the edge (the CLI,
    the Dagster resource), never read from the environment here."""
    if profile.backend == "kura":
        backend = KuraBackend(profile, settings)
    else:
        backend = ReferenceBackend(profile, settings)
    return settings.wrap_backend(backend)
