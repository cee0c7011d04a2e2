"""A simulator subprocess shared by a test module, always stopped, and reset between tests.

A module opts in with `sim = shared_simulator(FAST)` and `fresh = fresh_simulator(FAST)`."""

import os

import pytest

from kura_perf.simulator import SimulatorConfig, SimulatorProcess


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def shared_simulator(config: dict):
    @pytest.fixture(scope="module")
    def sim():
        simulator = SimulatorProcess(config).start()
        pid = simulator.pid
        try:
            yield simulator
        finally:
            simulator.stop()
            assert pid_gone(pid), "the simulator process outlived its fixture"

    return sim


def fresh_simulator(config: dict):
    @pytest.fixture
    def fresh(sim):
        """The shared simulator with the module's config, an empty log and full buckets."""
        defaults = SimulatorConfig.from_dict(config).to_dict()
        sim.configure(**{k: v for k, v in defaults.items() if k not in ("host", "port")})
        sim.reset()
        return sim

    return fresh
