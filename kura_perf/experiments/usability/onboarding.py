"""Time to a first working pipeline: what a new user goes through, step by step, timed.

  venv          python -m venv <fresh folder>
  install       <venv>/bin/python -m pip install -c constraints.txt kura==<version> (the package index, as a
                user would; constraints.txt keeps torch on the CPU wheel; pip's cache is used unless
                --no-pip-cache)
  import        <venv>/bin/python -c "import kura.summarisation, kura.cluster, kura.meta_cluster, kura.dimensionality"
  first_result  examples/kura_basic.py under the fresh venv, against the local OpenAI-compatible simulator
                (started from this interpreter; the fresh venv only runs Kura), until it prints its clusters

`reuse_packages=True` is the cheap path the tests take: a .pth file makes the fresh venv see this
interpreter's site-packages (Kura included), so install finds everything satisfied. (A
--system-site-packages venv would not do: it sees the base interpreter's packages, not this venv's.)
Such rows are flagged and the report keeps them apart from real installs.
Every attempt is recorded, a failed step with its error; the venv is deleted afterwards unless kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kura_perf.experiments.usability.examples import EXAMPLES, EXAMPLES_DIR, example_env, printed_clusters
from kura_perf.experiments.usability.records import new_row
from kura_perf.simulator.process import SimulatorProcess

DEFAULT_CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints.txt"
IMPORT_CHECK = ("import kura, kura.summarisation, kura.cluster, kura.meta_cluster, kura.dimensionality; "
                "print(kura.__file__)")
STEPS = ("venv", "install", "import", "first_result")


@dataclass
class OnboardingSettings:
    workdir: Path
    kura_spec: str = ""  # default: kura==<the version installed here>
    constraints: Path | None = DEFAULT_CONSTRAINTS
    reuse_packages: bool = False
    pip_cache: bool = True
    conversations: int = 60
    keep_venv: bool = False
    python: str = sys.executable
    step_timeout_s: float = 1800.0
    simulator_config: dict | None = None


class StepFailed(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step


def _default_spec() -> str:
    try:
        return f"kura=={metadata.version('kura')}"
    except metadata.PackageNotFoundError:
        return "kura"


def _step(step: str, command: list[str], timeout_s: float, env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        raise StepFailed(step, f"did not finish within {timeout_s:.0f} s") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " / ".join(line.strip() for line in proc.stderr.strip().splitlines()[-6:] if line.strip())
        raise StepFailed(step, f"`{' '.join(command[:6])} ...` exited with code {proc.returncode}: {tail[:1500]}")
    return wall, proc.stdout


def _reuse_packages(venv: Path) -> None:
    import sysconfig

    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "_kura_perf_reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def _du(folder: Path) -> int | None:
    try:
        out = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, timeout=120)
        return int(out.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def run_onboarding(settings: OnboardingSettings, run_id: str | None = None, log=None) -> dict:
    """One attempt, every step timed; returns the onboarding_runs row (also when a step failed)."""
    import os

    from kura_perf.experiments.usability.kura_objects import write_conversation_dump  # kura: optional

    say = log or (lambda message: None)
    spec = settings.kura_spec or _default_spec()
    workdir = Path(settings.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="onboarding-", dir=workdir))
    venv = folder / "venv"
    py = str(venv / "bin" / "python")
    row = {"install_spec": spec, "reused_packages": settings.reuse_packages,
           "pip_cache": settings.pip_cache, "example": EXAMPLES["basic"][0], "conversations": settings.conversations}
    times: dict[str, float] = {}
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    try:
        times["venv"], _ = _step("venv", [settings.python, "-m", "venv", str(venv)], settings.step_timeout_s)
        if settings.reuse_packages:
            _reuse_packages(venv)
        say(f"onboarding: venv {times['venv']:.1f} s")

        command = [py, "-m", "pip", "install", "-q", spec]
        if settings.constraints:
            command[4:4] = ["-c", str(settings.constraints)]
        if not settings.pip_cache:
            command.append("--no-cache-dir")
        times["install"], _ = _step("install", command, settings.step_timeout_s, env=clean_env)
        say(f"onboarding: install {spec} {times['install']:.1f} s")
        _, version = _step("install", [py, "-c", "import importlib.metadata as m; print(m.version('kura'))"],
                           120, env=clean_env)
        row["installed_kura"] = version.strip()

        env = example_env("http://127.0.0.1:9/v1", base=clean_env)  # replaced below by the simulator's URL
        times["import"], _ = _step("import", [py, "-c", IMPORT_CHECK], settings.step_timeout_s, env=env)
        say(f"onboarding: import {times['import']:.1f} s")

        dump = folder / "conversations.json"
        write_conversation_dump(settings.conversations, dump)
        with SimulatorProcess(settings.simulator_config or {"latency_ms": 5, "p99_ms": 5}) as sim:
            env = example_env(sim.base_url, base=clean_env)
            script = EXAMPLES_DIR / EXAMPLES["basic"][0]
            times["first_result"], out = _step("first_result", [py, str(script), str(dump)],
                                               settings.step_timeout_s, env=env)
            row["api_calls"] = int(sim.log().get("requests", 0))
        row["clusters_printed"] = printed_clusters(out)
        if not row["clusters_printed"]:
            raise StepFailed("first_result", f"{script.name} printed no clusters: {out[-500:]!r}")
        say(f"onboarding: first result {times['first_result']:.1f} s ({row['clusters_printed']} clusters)")
        row["status"] = "success"
    except StepFailed as exc:
        row.update(status="failed", failed_step=exc.step, error_message=str(exc))
        say(f"onboarding FAILED at {exc}")
    finally:
        row["venv_bytes"] = _du(venv) if venv.exists() else None
        if not settings.keep_venv:
            shutil.rmtree(folder, ignore_errors=True)
    row.update({f"{step}_s": times.get(step) for step in STEPS})
    row["total_s"] = sum(times.values()) if times else None
    return new_row(run_id or uuid.uuid4().hex, **row)
