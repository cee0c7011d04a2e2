"""Run the proxy beside a run (the kura backend against a real endpoint) or a test, and always stop it.

Like SimulatorProcess: `python -m kura_perf.proxy` in its own session (so its whole process group can
be signalled), the bound port from a port file, /_proxy/health polled until it answers; stopped with
SIGTERM then SIGKILL to the group, also by a finalizer if the object is dropped without `stop()`.
A separate process rather than a thread of the run: the proxy's own work never shares the GIL (nor
the meter's CPU figures) with the stage being measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path

from kura_perf.errors import StageError
from kura_perf.simulator.config import LOOPBACK
from kura_perf.simulator.process import _kill_group

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProxyProcess:
    """`with ProxyProcess(upstream, api_log) as proxy: client = AsyncOpenAI(base_url=proxy.base_url)`."""

    def __init__(self, upstream: str, api_log: str, *, startup_timeout_s: float = 30.0,
                 stop_timeout_s: float = 5.0, python: str = sys.executable):
        from kura_perf.proxy.server import ProxyConfig

        ProxyConfig(upstream=upstream, api_log=api_log)  # a bad URL is refused here, not in the child
        self.upstream, self.api_log = upstream, str(api_log)
        self.startup_timeout_s, self.stop_timeout_s, self.python = startup_timeout_s, stop_timeout_s, python
        self.port = 0
        self.output = ""
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def health(self) -> dict:
        with _NO_PROXY_OPENER.open(f"http://{LOOPBACK}:{self.port}/_proxy/health", timeout=5.0) as response:
            return json.loads(response.read())

    def start(self) -> "ProxyProcess":
        if self._process is not None:
            raise RuntimeError("proxy already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="kura-perf-proxy-"))
        port_file = self._workdir / "port"
        command = [self.python, "-m", "kura_perf.proxy", "--upstream", self.upstream, "--api-log", self.api_log,
                   "--port", "0", "--port-file", str(port_file)]
        with open(self._workdir / "output.log", "wb") as output:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
                raise StageError(f"the recording proxy exited with code {self._process.returncode} on start: "
                                 f"{self._read_output()[-2000:]}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                try:
                    self.health()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise StageError(f"the recording proxy did not answer /_proxy/health within {self.startup_timeout_s:g}s")

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

    def __enter__(self) -> "ProxyProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
