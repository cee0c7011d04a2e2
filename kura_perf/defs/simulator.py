"""A resource that runs the API simulator for runs whose profile asks for it (api.simulate = true):
started on a free port before the run's first step, stopped after its last, also on failure."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from dagster import ConfigurableResource, InitResourceContext

from kura_perf.backends.model_factory import SIMULATOR_URL_ENV
from kura_perf.profiles import get_profile


class ApiSimulatorResource(ConfigurableResource):
    profiles_file: str | None = None

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["ApiSimulatorResource"]:
        run = context.run
        profile_name = run.tags.get("dagster/partition/profile") if run else None
        profile = get_profile(profile_name, self.profiles_file) if profile_name else None
        if profile is None or not profile.api.simulate or os.environ.get(SIMULATOR_URL_ENV):
            yield self  # no simulator needed, or one is already serving this process
            return
        from kura_perf.simulator.config import SimulatorConfig
        from kura_perf.simulator.process import SimulatorProcess

        with SimulatorProcess(SimulatorConfig.from_dict(profile.api.simulator)) as sim:
            os.environ[SIMULATOR_URL_ENV] = sim.base_url
            context.log.info(f"API simulator for profile '{profile.name}' at {sim.base_url} (pid {sim.pid})")
            try:
                yield self
            finally:
                os.environ.pop(SIMULATOR_URL_ENV, None)
