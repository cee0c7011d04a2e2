"""Backend wrappers that make one stage slower, for tests that need a regression to catch or a worker
to kill mid-stage. Named by RunSettings.backend_wrapper (or $KURA_PERF_BACKEND_WRAPPER in a worker's
environment), e.g. "kura_perf_tests.slow_stages:summaries_30_percent"."""

from __future__ import annotations

import time


class SlowStage:
    """The wrapped backend, except that `stage` sleeps `factor` times as long again as it computed:
    inside the metered block, as a real slowdown of the stage would be."""

    def __init__(self, backend, stage: str, factor: float):
        self._backend, self._stage, self._factor = backend, stage, factor

    def run(self, stage, inputs):
        t0 = time.perf_counter()
        result = self._backend.run(stage, inputs)
        if stage == self._stage:
            time.sleep(self._factor * (time.perf_counter() - t0))
        return result

    def __getattr__(self, name):  # name, close, prepare, api_counters, ...: the backend's own
        return getattr(self._backend, name)


def summaries_30_percent(backend) -> SlowStage:
    return SlowStage(backend, "summaries", 0.3)


def embeddings_twice(backend) -> SlowStage:
    return SlowStage(backend, "embeddings", 1.0)


class DelayedStage(SlowStage):
    """The wrapped backend, except that `stage` sleeps a fixed `seconds` after its work (inside the
    metered block): a slowdown with a known lower bound, whatever the machine's load."""

    def __init__(self, backend, stage: str, seconds: float):
        super().__init__(backend, stage, 0.0)
        self._seconds = seconds

    def run(self, stage, inputs):
        result = self._backend.run(stage, inputs)
        if stage == self._stage:
            time.sleep(self._seconds)
        return result


def summaries_plus_quarter_second(backend) -> DelayedStage:
    return DelayedStage(backend, "summaries", 0.25)


def embeddings_plus_1500ms(backend) -> DelayedStage:
    return DelayedStage(backend, "embeddings", 1.5)
