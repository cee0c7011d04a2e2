"""`kura-perf kura-probe`: Kura's own CPU work inside its clusters stage, measured at a scale where the whole
stage cannot be watched to its end (issue 19: "where a Kura stage still cannot finish, measure its CPU-bound
work at 100K for real and project only the API waiting from the validated model, labelled as such").

Kura 0.5.4's clusters stage is three steps in a row: the clustering method's `cluster` (scikit-learn's
k-means, then Kura groups the labels with a comprehension over clusters x items), then
ClusterDescriptionModel.generate_clusters, which first builds every cluster's naming request, calling
get_contrastive_examples once per cluster (it lists the summaries of ALL other clusters: O(n) per cluster,
O(n x k) in all), and only then sends the naming requests. So the stage's wall is the two CPU steps
plus the naming requests' waiting, and the two CPU steps are what a probe can measure for real:

  clustering   measured whole on the partition's stored summaries and embeddings, in a process of its own
               (kura_probe_phase.py), stopped at --time-limit;
  contrastive  measured on --sample clusters drawn at random; each call does the same work, so the
               stage's cost is the measured mean per call x k (labelled "projected from a sample of s of k");
  naming       not run: its API waiting at the scale comes from `kura-perf predict`'s model (labelled
               projected), from the profile's measured calls per conversation where the store has them.

Every phase runs as `python -m kura_perf.experiments.kura_probe_phase`, in its own process group: its CPU
seconds and peak RSS come from the kernel (wait4's rusage), not from the code under test, and a phase past
its time limit is killed with its group and recorded as stopped there (its wall is then a lower bound).
The probe's record (schema kura-probe/1) carries the host fingerprint, the code version, Kura's version and
the host's contention over the probe (meter/host_load.py), like a stage record: it goes to
<data root>/probes/, and `kura-perf results add-probe` copies it into results/probes/ for `publish`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kura_perf.errors import KuraPerfError, ProfileError
from kura_perf.files.atomic import atomic_write_text
from kura_perf.files.outputs import has_stage
from kura_perf.meter.host import code_version, host_info, package_versions
from kura_perf.meter.host_load import CONTENDED_SHARE, LoadWindow, is_contended
from kura_perf.profiles import Profile

SCHEMA = "kura-probe/1"
PHASES = ("clustering", "contrastive")
FINISHED, STOPPED, FAILED = "finished", "stopped at time limit", "failed"
MEASURED, SAMPLED, PROJECTED = "measured", "projected from a sample", "projected"
# Settings that must agree between the profile and the profile whose stored outputs the probe reads
# (--inputs-from): the summaries and embeddings Kura would have made.
SAME_INPUTS = ("backend", "summary_model", "embedding_model", "embedding_dimension", "data_file", "data_format", "seed")


class ProbeError(KuraPerfError):
    """A probe that cannot run: names the partition, profile or setting."""


@dataclass
class PhaseResult:
    phase: str
    call: str | None
    status: str  # FINISHED | STOPPED | FAILED
    wall_s: float  # the phase's process, loading included (a lower bound when stopped)
    cpu_s: float  # user + system of the process and its children, from the kernel
    peak_rss_mb: float  # ru_maxrss of the process (MiB)
    work_wall_s: float | None = None  # the Kura call(s) alone, as the phase timed them
    work_cpu_s: float | None = None
    items: int | None = None
    clusters: int | None = None
    sampled: int | None = None  # contrastive: calls timed (of `clusters`)
    stage_s: float | None = None  # the whole stage's share of this step: measured, or mean x k
    basis: str | None = None  # MEASURED | SAMPLED
    detail: dict = field(default_factory=dict)
    message: str | None = None  # why it stopped or failed


@dataclass
class ProbeRecord:
    schema: str
    probe_id: str
    profile: str
    inputs_from: str
    scale: str
    scale_n: int
    kura_version: str | None
    code_version: str
    host_fingerprint: str
    host_cpu: str
    host_cores: int
    host_ram_gb: float
    host_os: str
    package_versions: dict
    started_at: str
    finished_at: str
    time_limit_s: float
    host_contention: float | None
    contended: bool
    phases: list[PhaseResult]
    naming: dict | None  # predict's model: calls, seconds, binds, source (labelled projected)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def file_name(self) -> str:
        return f"{self.started_at[:10]}_{self.profile}_{self.scale}_{self.probe_id[:8]}.json"


def check_inputs_profile(profile: Profile, inputs: Profile) -> None:
    """The stored outputs of `inputs` stand in for `profile`'s only when they were made the same way."""
    if profile.backend != "kura":
        raise ProbeError(f"profile '{profile.name}': backend '{profile.backend}'; the probe measures Kura's own steps "
                         "(backend = \"kura\")")
    for key in SAME_INPUTS:
        if getattr(profile, key) != getattr(inputs, key):
            raise ProbeError(f"--inputs-from '{inputs.name}': {key} is {getattr(inputs, key)!r}, profile "
                             f"'{profile.name}' has {getattr(profile, key)!r}: its stored summaries and embeddings "
                             "are not the ones Kura would cluster")


def run_phase(phase: str, folder: Path, profile: str, labels: Path, *, sample: int, seed: int,
              clusters_per_group: int, time_limit_s: float, python: str = sys.executable) -> PhaseResult:
    """One phase in its own process group; its CPU and peak RSS from wait4; killed at time_limit_s."""
    cmd = [python, "-m", "kura_perf.experiments.kura_probe_phase", phase, "--folder", str(folder), "--profile",
           profile, "--labels", str(labels), "--sample", str(sample), "--seed", str(seed),
           "--clusters-per-group", str(clusters_per_group)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
        status, rusage, stopped = _wait(proc, time_limit_s)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    cpu = rusage.ru_utime + rusage.ru_stime
    peak = rusage.ru_maxrss / 1024.0  # KiB on Linux
    if stopped:
        return PhaseResult(phase, None, STOPPED, wall, cpu, peak,
                           message=f"not finished after {time_limit_s:g} s: stopped (the wall is a lower bound)")
    code = os.waitstatus_to_exitcode(status)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        last = [line for line in stderr.strip().splitlines() if line.strip()]
        return PhaseResult(phase, None, FAILED, wall, cpu, peak,
                           message=f"exit {code}: {last[-1] if last else 'no output'}"[:500])
    report = json.loads(lines[-1])
    result = PhaseResult(phase, report["call"], FINISHED, wall, cpu, peak, report["work_wall_s"], report["work_cpu_s"],
                         report["items"], report["clusters"], report.get("sampled"),
                         detail={k: v for k, v in report.items() if k in ("per_call_s", "grouping")})
    if report.get("sampled"):
        result.stage_s = report["per_call_s"]["mean"] * report["clusters"]
        result.basis = SAMPLED
    else:
        result.stage_s, result.basis = report["work_wall_s"], MEASURED
    return result


def _wait(proc: subprocess.Popen, time_limit_s: float):
    """(wait status, rusage, stopped): poll with wait4 so the kernel's rusage of the child is kept; at the
    limit the whole process group is killed (numpy's and OpenMP's threads with it)."""
    deadline = time.monotonic() + time_limit_s
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, rusage, False
        if time.monotonic() >= deadline:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            return status, rusage, True
        time.sleep(0.05)


def probe(profile: Profile, inputs: Profile, scale: str, scale_n: int, folder: Path, *, phases=PHASES,
          sample: int = 200, seed: int = 0, time_limit_s: float = 3600.0, naming: dict | None = None,
          echo=print) -> ProbeRecord:
    """Run the phases on `inputs`' stored partition at `folder` with `profile`'s Kura clustering method;
    naming: predict's figures for the naming requests (naming_prediction), kept in the record as projected."""
    from kura_perf.backends.kura_models import require_kura

    check_inputs_profile(profile, inputs)
    kura_version = require_kura(profile)
    if profile.clustering not in ("kmeans", "minibatch-kmeans"):
        raise ProfileError(f"profile '{profile.name}': clustering '{profile.clustering}'; the probe measures Kura's "
                           "k-means methods (kmeans, minibatch_kmeans)")
    for stage in ("summaries", "embeddings"):
        if not has_stage(folder, stage):
            raise ProbeError(f"{folder}: no complete '{stage}' output; materialize it first "
                             f"(kura-perf run --profile {inputs.name} --scale {scale} --stages summaries embeddings)")
    per_group = int(dict(profile.clustering_params).get("clusters_per_group", 10))
    started, window = datetime.now(timezone.utc), LoadWindow()
    results = []
    with tempfile.TemporaryDirectory(prefix="kura-probe-") as scratch:
        labels = Path(scratch) / "labels.npy"
        for phase in phases:
            echo(f"  {phase}: running (time limit {time_limit_s:g} s) ...")
            result = run_phase(phase, folder, profile.name, labels, sample=sample, seed=seed,
                               clusters_per_group=per_group, time_limit_s=time_limit_s)
            echo(f"  {phase}: {describe_phase(result)}")
            results.append(result)
    load = window.finish()
    contention = load.contention if load is not None else None
    host = host_info()
    return ProbeRecord(SCHEMA, uuid.uuid4().hex, profile.name, inputs.name, scale, scale_n, kura_version, code_version(),
                       host["host_fingerprint"], host["host_cpu"], host["host_cores"], host["host_ram_gb"],
                       host["host_os"], package_versions(), started.isoformat(),
                       datetime.now(timezone.utc).isoformat(), time_limit_s, contention,
                       bool(load is not None and is_contended(contention, CONTENDED_SHARE, load.other_cpu_s)), results, naming)


def describe_phase(r: PhaseResult) -> str:
    head = (f"{r.status}: process wall {r.wall_s:,.1f} s, CPU {r.cpu_s:,.1f} s, peak {r.peak_rss_mb:,.0f} MiB")
    if r.status != FINISHED:
        return f"{head}; {r.message}"
    work = f"; {r.call}: {r.work_wall_s:,.1f} s"
    if r.sampled:
        mean = r.detail["per_call_s"]["mean"]
        work += (f" for {r.sampled} of {r.clusters:,} clusters ({mean * 1000:,.1f} ms per call) -> "
                 f"{r.stage_s:,.0f} s for all {r.clusters:,} ({SAMPLED})")
    else:
        work += f" ({r.items:,} items -> {r.clusters:,} clusters)"
    return head + work


def naming_prediction(profile: Profile, n: int, records: list[dict]) -> dict | None:
    """The clusters stage's naming requests at n by predict's model (experiments/predict.py)."""
    from kura_perf.experiments.predict import predict

    for p in predict(profile, n, records):
        if p.stage == "clusters":
            return {"calls": p.calls, "seconds": p.time_s, "binds": p.binds, "source": p.source,
                    "basis": PROJECTED, "model": "kura-perf predict"}
    return None


def write_probe(record: ProbeRecord, folder: Path) -> Path:
    path = Path(folder) / record.file_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, record.to_json() + "\n")
    return path


def stage_seconds(phases: list[dict], naming: dict | None) -> tuple[float, list[dict]]:
    """(seconds, the steps that did not finish) of the clusters stage from a probe's steps (as dicts): each
    finished step's share of the stage (measured, or mean x k), a stopped step's wall (the sum is then a
    lower bound), plus the naming waiting (projected). The one sum the CLI, the table and the breaking
    points all use."""
    seconds, unfinished = 0.0, []
    for phase in phases:
        if phase["status"] == FINISHED:
            seconds += phase["stage_s"] or 0.0
        else:
            seconds += phase["wall_s"]
            unfinished.append(phase)
    return seconds + (naming["seconds"] if naming else 0.0), unfinished


def stage_total_s(record: ProbeRecord) -> tuple[float | None, str]:
    """The clusters stage's wall at the scale and what it is made of; None when a CPU step did not finish
    (the stage then takes longer than any figure the probe could give)."""
    phases = [asdict(r) for r in record.phases]
    total, unfinished = stage_seconds(phases, record.naming)
    if unfinished:
        return None, f"{unfinished[0]['phase']} {unfinished[0]['status']}"
    parts = [f"{r['phase']} {r['basis']}" for r in phases] + (["naming projected"] if record.naming else [])
    return total, ", ".join(parts)
