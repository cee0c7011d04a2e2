"""Pipeline subprocesses for stress scenarios: `kura-perf run` exactly as a user starts it, each in its
own process group (so a timeout stops all of it), with its output kept in log files and its peak RSS
read from the kernel's rusage of the child (an independent meter, beside the stage records')."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RUN_LINE = re.compile(r"^run ([0-9a-f-]{36}) (succeeded|FAILED)(?:: (.*))?$", re.MULTILINE)
FAILED_STEP = re.compile(r"(?:^|; )([A-Za-z_][\w]*): ")


@dataclass
class Home:
    """Where a scenario's pipelines keep their data and Dagster instance."""

    data: Path  # KURA_PERF_HOME
    dagster: Path  # DAGSTER_HOME
    logs: Path

    def env(self, extra: dict | None = None) -> dict:
        env = {**os.environ, "KURA_PERF_HOME": str(self.data), "DAGSTER_HOME": str(self.dagster), **(extra or {})}
        env.pop("KURA_PERF_DB", None)  # the scenario's own store, never the user's database file
        return env


@dataclass
class PipelineRun:
    """One finished `kura-perf run` process."""

    args: list[str]
    exit_code: int | None = None  # negative: killed by that signal
    run_id: str | None = None  # from its "run <id> succeeded/FAILED" line, when it got that far
    stdout: str = ""
    stderr: str = ""
    peak_rss_mb: float | None = None  # the child's ru_maxrss
    wall_s: float = 0.0
    timed_out: bool = False
    stages: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)  # the steps its "run ... FAILED: step: ..." line names
    running_markers: int | None = None  # stages it left marked running (the trace a stage leaves before it starts)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stdout + self.stderr

    @property
    def refused(self) -> bool:
        """Stopped before any stage with the CLI's one-line error (a bad profile, a bad argument)."""
        return self.exit_code == 2 and "kura-perf: error:" in self.stderr

    def error_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if "FAILED" in ln or "error:" in ln or "Error" in ln]
        return (lines[-1] if lines else (self.stderr.strip().splitlines() or [""])[-1])[:300]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kura_perf.cli.main", *args]


def run_args(scale: str, profile: str, stages: list[str] | None, profiles_file: Path | None = None) -> list[str]:
    args = ["run", "--scale", scale, "--profile", profile]
    if stages:
        args += ["--stages", *stages]
    if profiles_file:
        args += ["--profiles", str(profiles_file)]
    return args


class Pipeline:
    """A started `kura-perf ...` process; `wait()` reaps it and fills a PipelineRun."""

    def __init__(self, home: Home, args: list[str], name: str, env: dict | None = None,
                 preexec: Callable[[], None] | None = None, stages: list[str] | None = None):
        home.logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = home.logs / f"{name}.out", home.logs / f"{name}.err"
        self.result = PipelineRun(args=args, stages=list(stages or []))
        self._t0 = time.perf_counter()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.process = subprocess.Popen(cli(*args), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                            env=home.env(env), start_new_session=True, preexec_fn=preexec)

    def poll(self) -> bool:
        """True once the process has exited (and is reaped)."""
        if self.result.exit_code is not None:
            return True
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return False
        self._finish(status, usage)
        return True

    def _finish(self, status: int, usage) -> None:
        r = self.result
        r.exit_code = os.waitstatus_to_exitcode(status)
        self.process.returncode = r.exit_code  # reaped here: Popen must not wait again
        r.wall_s = time.perf_counter() - self._t0
        r.peak_rss_mb = usage.ru_maxrss / 1024.0  # KB on Linux
        r.stdout = self.out_path.read_text(errors="replace")
        r.stderr = self.err_path.read_text(errors="replace")
        found = RUN_LINE.search(r.stdout + "\n" + r.stderr)
        r.run_id = found.group(1) if found else None
        if found and found.group(2) == "FAILED" and found.group(3):
            r.failed_steps = FAILED_STEP.findall(found.group(3))

    def stop(self) -> None:
        """Stop the whole process group (a pipeline and anything it started)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout_s: float, tick: Callable[[], None] | None = None) -> PipelineRun:
        deadline = time.monotonic() + timeout_s
        while not self.poll():
            if time.monotonic() > deadline:
                self.result.timed_out = True
                self.stop()
                _, status, usage = os.wait4(self.process.pid, 0)
                self._finish(status, usage)
                break
            if tick is not None:
                tick()
            time.sleep(0.1)
        return self.result


def wait_all(pipelines: list[Pipeline], timeout_s: float, tick: Callable[[], None] | None = None) -> list[PipelineRun]:
    """Wait for all; past the timeout, the ones still running are stopped (and marked timed out)."""
    deadline = time.monotonic() + timeout_s
    try:
        while not all(p.poll() for p in pipelines):
            if time.monotonic() > deadline:
                break
            if tick is not None:
                tick()
            time.sleep(0.1)
    finally:
        for p in pipelines:
            if not p.poll():
                p.wait(0)
    return [p.result for p in pipelines]


def run_command(home: Home, args: list[str], name: str, timeout_s: float = 300) -> PipelineRun:
    """A short kura-perf command in the scenario's home (e.g. `db`: what the next command start does)."""
    return Pipeline(home, args, name).wait(timeout_s)
