"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from kura_perf.config import Paths
from kura_perf.profiles import Profile
from kura_perf.stages.base import StageInputs, StageResult

if TYPE_CHECKING:
    from kura_perf.meter.api import ApiCounters
    from kura_perf.outputs import StageData


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


def get_backend(profile: Profile, paths: Paths | None = None) -> Backend:
    """paths: the data root (its model_cache keeps the ONNX exports); None for a backend that needs none."""
    if profile.backend == "kura":
        from kura_perf.backends.kura import KuraBackend

        return KuraBackend(profile)
    from kura_perf.backends.reference import ReferenceBackend

    return ReferenceBackend(profile, paths)
