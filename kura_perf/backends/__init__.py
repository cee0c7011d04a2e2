"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from kura_perf.backends.protocols import Backend, Prepares, ReportsApiCounters
from kura_perf.profiles import Profile
from kura_perf.settings import RunSettings

__all__ = ["Backend", "Prepares", "ReportsApiCounters", "get_backend"]


def get_backend(profile: Profile, settings: RunSettings | None = None) -> Backend:
    """The profile's backend, set up by `settings` (the model cache, the simulator, the credentials'
    names; None: read from the environment here, at the edge), wrapped as settings.backend_wrapper says."""
    settings = settings or RunSettings.from_env()
    if profile.backend == "kura":
        from kura_perf.backends.kura import KuraBackend

        backend = KuraBackend(profile, settings)
    else:
        from kura_perf.backends.reference import ReferenceBackend

        backend = ReferenceBackend(profile, settings)
    return settings.wrap_backend(backend)
