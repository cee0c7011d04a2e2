"""Run the simulator beside a test or a pipeline run, and always stop it.

`SimulatorProcess` starts `python -m kura_perf.simulator --port 0` in its own session (so the whole
process group can be signalled), learns the bound port from a port file, waits for /_sim/health,
and on exit sends SIGTERM to the group, then SIGKILL after `stop_timeout_s`. A finalizer does the
same if the object is dropped without being stopped, so no simulator outlives its owner.

`run_in_thread` serves from a daemon thread of this process instead: cheaper, but it shares the GIL
with the client being measured, so load tests should prefer the subprocess.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.parse
import urllib.request
from typing import Any

from kura_perf.child_server import NO_PROXY_OPENER as _NO_PROXY_OPENER
from kura_perf.child_server import ChildServer
from kura_perf.errors import StageError
from kura_perf.simulator.config import LOOPBACK, SimulatorConfig


def _as_config(config: SimulatorConfig | dict | None) -> SimulatorConfig:
    if config is None:
        return SimulatorConfig()
    return config if isinstance(config, SimulatorConfig) else SimulatorConfig.from_dict(config)


class SimulatorControl:
    """The control endpoints (/_sim/...) of a running simulator, over plain urllib."""

    port: int

    @property
    def root_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client's base_url should be."""
        return f"{self.root_url}/v1"

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 5.0) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(self.root_url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())

    def health(self) -> dict:
        return self._call("GET", "/_sim/health")

    def log(self) -> dict:
        """The request log: counts by endpoint, model and status, tokens, injected faults."""
        return self._call("GET", "/_sim/log")

    def reset(self) -> None:
        """Clear the log and HTTP-started outages, refill the buckets, re-seed the fault draws."""
        self._call("POST", "/_sim/reset")

    def configure(self, **changes: Any) -> dict:
        """Apply a partial config (SimulatorConfig.from_dict keys); buckets restart full."""
        return self._call("POST", "/_sim/config", changes)

    def outage(self, duration_s: float, start_in_s: float = 0.0) -> None:
        """Every API request gets 503 from start_in_s for duration_s."""
        self._call("POST", "/_sim/outage", {"duration_s": duration_s, "start_in_s": start_in_s})


def served_speed_factor(base_url: str | None, timeout_s: float = 2.0) -> float | None:
    """The speed_factor of the simulator serving `base_url` (its GET /_sim/config), or None when the URL
    is not a simulator on 127.0.0.1 or it does not answer: a stage record then says no simulator timed it."""
    if not base_url:
        return None
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.hostname != LOOPBACK or parsed.port is None:
        return None
    try:
        with _NO_PROXY_OPENER.open(f"http://{LOOPBACK}:{parsed.port}/_sim/config", timeout=timeout_s) as response:
            factor = json.loads(response.read()).get("speed_factor", 1.0)
    except (OSError, ValueError, AttributeError):
        return None
    return float(factor) if isinstance(factor, (int, float)) and not isinstance(factor, bool) else None


class SimulatorProcess(SimulatorControl, ChildServer):
    """`with SimulatorProcess(config) as sim: client = AsyncOpenAI(base_url=sim.base_url, ...)`."""

    label = "API simulator"
    module = "kura_perf.simulator"
    health_path = "/_sim/health"

    def __init__(self, config: SimulatorConfig | dict | None = None, *, startup_timeout_s: float = 30.0,
                 stop_timeout_s: float = 5.0, python: str = sys.executable):
        ChildServer.__init__(self, startup_timeout_s=startup_timeout_s, stop_timeout_s=stop_timeout_s,
                             python=python)
        self.config = _as_config(config)

    def arguments(self) -> list[str]:
        return ["--config-json", json.dumps(self.config.to_dict() | {"port": 0})]


class SimulatorThread(SimulatorControl):
    """The simulator on its own event loop in a daemon thread of this process."""

    def __init__(self, config: SimulatorConfig | dict | None = None):
        self.config = _as_config(config)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> "SimulatorThread":
        from kura_perf.simulator.server import start_server  # aiohttp only when serving

        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._server = self._loop.run_until_complete(start_server(self.config))
                self.port = self._server.port
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._server.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="kura-perf-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise StageError(f"API simulator did not start: {failure[0]}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "SimulatorThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(config: SimulatorConfig | dict | None = None) -> SimulatorThread:
    """A started in-process simulator; use as a context manager or call `.stop()`."""
    return SimulatorThread(config).start()
