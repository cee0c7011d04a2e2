"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from kura_perf.profiles import Profile
from kura_perf.settings import RunSettings
from kura_perf.stages.base import StageInputs, StageResult

if TYPE_CHECKING:
    from kura_perf.meter.api import ApiCounters
    from kura_perf.files.outputs import StageData


class Backend(Protocol):
    name: str

    def run(self, stage: str, inputs: StageInputs) -> StageResult: ...

    def close(self) -> None: ...


# Optional abilities. A backend that has one says so by naming the protocol among its bases; the
# runner asks with isinstance (the method names are distinctive), never by inspecting signatures.
@runtime_checkable
class Prepares(Protocol):
    """One-time set-up (model load, ONNX export check) and the model-only calibration, which the runner
    calls right before the stage is metered, so neither counts in the stage's time."""

    def prepare(self, stage: str, read_upstream: Callable[[str], StageData]) -> None: ...


@runtime_checkable
class ReportsApiCounters(Protocol):
    """What the backend's API models counted so far, asked when a stage fails midway: its record still
    reports the calls, errors and 429s it made before giving up."""

    def api_counters(self) -> ApiCounters | None: ...


def get_backend(profile: Profile, settings: RunSettings) -> Backend:
    """The profile's backend, set up by the run's `settings` (the model cache, the simulator, the
    credentials' names), wrapped as settings.backend_wrapper says. Required: built at the edge (the CLI,
    the Dagster resource), never read from the environment here."""
    if profile.backend == "kura":
        from kura_perf.backends.kura import KuraBackend

        backend = KuraBackend(profile, settings)
    else:
        from kura_perf.backends.reference import ReferenceBackend

        backend = ReferenceBackend(profile, settings)
    return settings.wrap_backend(backend)
