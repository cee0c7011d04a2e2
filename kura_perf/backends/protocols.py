"""What a backend is, and the optional abilities it can declare (the runner asks with isinstance).

Apart from the package __init__ (which builds backends and imports their modules), so a backend
module takes these from here without importing back through the package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from kura_perf.stages.base import StageInputs, StageResult

if TYPE_CHECKING:
    from kura_perf.files.outputs import StageData
    from kura_perf.meter.api import ApiCounters


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
