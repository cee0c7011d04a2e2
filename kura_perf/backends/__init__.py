"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from typing import Protocol

from kura_perf.config import Paths
from kura_perf.profiles import Profile
from kura_perf.stages.base import StageInputs, StageResult


class Backend(Protocol):
    name: str

    def run(self, stage: str, inputs: StageInputs) -> StageResult: ...

    def close(self) -> None: ...

    # Optional: prepare(stage, read_upstream) -> None, called by the runner right before the stage is
    # metered: one-time set-up (model load, ONNX export check) and the model-only calibration.


def get_backend(profile: Profile, paths: Paths | None = None) -> Backend:
    """paths: the data root (its model_cache keeps the ONNX exports); None for a backend that needs none."""
    if profile.backend == "kura":
        from kura_perf.backends.kura import KuraBackend

        return KuraBackend(profile)
    from kura_perf.backends.reference import ReferenceBackend

    return ReferenceBackend(profile, paths)
