"""Who runs the stages: `reference` (ours) or `kura` (the installed Kura package)."""

from __future__ import annotations

from typing import Protocol

from kura_perf.profiles import Profile
from kura_perf.stages.base import StageInputs, StageResult


class Backend(Protocol):
    name: str

    def run(self, stage: str, inputs: StageInputs) -> StageResult: ...

    def close(self) -> None: ...


def get_backend(profile: Profile) -> Backend:
    if profile.backend == "kura":
        from kura_perf.backends.kura import KuraBackend

        return KuraBackend(profile)
    from kura_perf.backends.reference import ReferenceBackend

    return ReferenceBackend(profile)
