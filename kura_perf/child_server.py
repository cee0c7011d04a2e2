"""A local HTTP server run as a child process beside a run or a test, and always stopped.

Why one class: the API simulator and the recording proxy are started, waited for and stopped the same
way, and a server left behind after a failed test or run keeps a port and a CPU busy. The child runs
`python -m <module> --port 0 --port-file F ...` in its own session (so its whole process group can be
signalled: a server started from a non-interactive shell may ignore a plain SIGTERM), the bound port is
read from the port file, its health URL is polled until it answers; it is stopped with SIGTERM then
SIGKILL to the group, also by a finalizer if the owner is dropped without `stop()`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path

from kura_perf.errors import StageError

LOOPBACK = "127.0.0.1"

# Loopback traffic must never go through an HTTP proxy from the environment.
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def kill_group(pid: int, stop_timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    _signal_group_and_wait(pid, signal.SIGTERM, process, stop_timeout_s)
    _signal_group_and_wait(pid, signal.SIGKILL, process, stop_timeout_s)


class ChildServer:
    """Subclasses name the server (`label`, for errors), its module, its health path and its arguments."""

    label = "server"
    module = ""
    health_path = "/health"

    def __init__(self, *, startup_timeout_s: float = 30.0, stop_timeout_s: float = 5.0,
                 python: str = sys.executable):
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self.port = 0
        self.output = ""  # the server's stdout+stderr, kept after stop for diagnosis
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    def arguments(self) -> list[str]:
        """The module's arguments besides --port and --port-file."""
        return []

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def health(self) -> dict:
        with NO_PROXY_OPENER.open(f"http://{LOOPBACK}:{self.port}{self.health_path}", timeout=5.0) as response:
            return json.loads(response.read())

    def start(self):
        if self._process is not None:
            raise RuntimeError(f"{self.label} already started")
        self._workdir = Path(tempfile.mkdtemp(prefix=f"kura-perf-{self.module.rsplit('.', 1)[-1]}-"))
        port_file = self._workdir / "port"
        command = [self.python, "-m", self.module, "--port", "0", "--port-file", str(port_file), *self.arguments()]
        with open(self._workdir / "output.log", "wb") as output:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._finalizer = weakref.finalize(self, kill_group, self._process.pid, self.stop_timeout_s)
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
                raise StageError(f"{self.label} exited with code {self._process.returncode} on start: "
                                 f"{self._read_output()[-2000:]}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                try:
                    self.health()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise StageError(f"{self.label} did not answer {self.health_path} within {self.startup_timeout_s:g}s")

    def _read_output(self) -> str:
        path = self._workdir / "output.log" if self._workdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL); safe to call twice."""
        if self._process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        kill_group(self._process.pid, self.stop_timeout_s, self._process)
        self.output = self._read_output()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
