"""A resource that runs the API simulator for runs whose profile asks for it (api.simulate = true):
started on a free port before the run's first step, stopped after its last, also on failure.

The assets get its address from this resource (`base_url`) and put it into their RunSettings
(`kura_perf.settings(simulator_url=api_simulator.base_url)`): nothing goes through the environment."""

import contextlib
from typing import Iterator, Optional

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import PrivateAttr

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.simulator.config import SimulatorConfig
from kura_perf.simulator.models import profile_models
from kura_perf.simulator.process import SimulatorProcess


class ApiSimulatorResource(ConfigurableResource):
    """kura_perf: the run's settings (which profiles file names the profile; a simulator_url there
    means one already serves the run, and none is started)."""

    kura_perf: ResourceDependency[KuraPerfResource]
    _started_url: Optional[str] = PrivateAttr(default=None)

    @property
    def base_url(self) -> Optional[str]:
        """The simulator serving this run: the one started here, else the settings' own, else None."""
        return self._started_url or self.kura_perf.settings().simulator_url

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["ApiSimulatorResource"]:
        run = context.run
        settings = self.kura_perf.settings()
        profile_name = run.tags.get("dagster/partition/profile") if run else None
        profile = settings.profile(profile_name) if profile_name else None
        if profile is None or not profile.api.simulate or settings.simulator_url:
            yield self  # no simulator needed, or one is already serving this run
            return

        # The profile's own model names are served even when the simulator's table does not know them.
        config = SimulatorConfig.from_dict(profile.api.simulator).serving(profile_models(profile))
        with SimulatorProcess(config) as sim:
            self._started_url = sim.base_url
            context.log.info(f"API simulator for profile '{profile.name}' at {sim.base_url} (pid {sim.pid})")
            try:
                yield self
            finally:
                self._started_url = None
