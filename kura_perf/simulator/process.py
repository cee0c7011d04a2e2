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
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from kura_perf.errors import StageError
from kura_perf.simulator.config import LOOPBACK, SimulatorConfig

# Loopback traffic must never go through an HTTP proxy from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def _signal_group_and_wait(pid: int, sig: int, process: subprocess.Popen | None, timeout_s: float) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if process is not None:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass


def _kill_group(pid: int, stop_timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    _signal_group_and_wait(pid, signal.SIGTERM, process, stop_timeout_s)
    _signal_group_and_wait(pid, signal.SIGKILL, process, stop_timeout_s)


class SimulatorProcess(SimulatorControl):
    """`with SimulatorProcess(config) as sim: client = AsyncOpenAI(base_url=sim.base_url, ...)`."""

    def __init__(self, config: SimulatorConfig | dict | None = None, *, startup_timeout_s: float = 30.0,
                 stop_timeout_s: float = 5.0, python: str = sys.executable):
        self.config = _as_config(config)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self.port = 0
        self.output = ""  # the server's stdout+stderr, kept after stop for diagnosis
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "SimulatorProcess":
        if self._process is not None:
            raise RuntimeError("simulator already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="kura-perf-sim-"))
        port_file = self._workdir / "port"
        config = self.config.to_dict() | {"port": 0}
        command = [self.python, "-m", "kura_perf.simulator", "--port", "0", "--port-file", str(port_file),
                   "--config-json", json.dumps(config)]
        with open(self._workdir / "output.log", "wb") as output:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._finalizer = weakref.finalize(self, _kill_group, self._process.pid, self.stop_timeout_s)
        try:
            self._wait_until_healthy(port_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self, port_file: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StageError(f"API simulator exited with code {self._process.returncode} on start: "
                                 f"{self._read_output()[-2000:]}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                try:
                    self.health()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise StageError(f"API simulator did not answer /_sim/health within {self.startup_timeout_s:g}s")

    def _read_output(self) -> str:
        path = self._workdir / "output.log" if self._workdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL); safe to call twice."""
        if self._process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _kill_group(self._process.pid, self.stop_timeout_s, self._process)
        self.output = self._read_output()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._process = None

    def __enter__(self) -> "SimulatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
