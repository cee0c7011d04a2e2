"""Kura versions side by side, and the commit that made one worse (issue 21; asv's `continuous` and `find`).

Each spec (kura_perf/kura_envs/spec.py) gets its cached environment (kura_envs/envs.py); every spec is
resolved and built BEFORE any stage runs, so a bad one is refused with pip's reason and nothing is run.
Then the same partition runs once per spec as `kura-perf run` started with the spec environment's
interpreter: the whole run (meter, stages, Dagster, the store) is the same code as any run, only the
`kura` it imports is the spec's. Its records go to the same store with kura_spec / kura_resolved set,
under a run id chosen here, and are read back to be compared.

The table and its verdicts are checks/versions.py's (the regression checks' noise-aware rule).
No Dagster here.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kura_perf.checks.regression import compare
from kura_perf.checks.versions import RECORD_SQL, regressions
from kura_perf.checks.versions import side_by_side as compare_specs
from kura_perf.errors import KuraPerfError, KuraSpecError
from kura_perf.kura_envs.envs import DEFAULT_CONSTRAINTS, SpecEnv, ensure_env
from kura_perf.kura_envs.spec import ResolvedSpec, parse_spec, resolve
from kura_perf.settings.run import RunSettings
from kura_perf.settings.third_party_env import kura_child_env
from kura_perf.store import query

log = logging.getLogger("kura_perf")
__all__ = ["DEFAULT_CONSTRAINTS", "bisect", "prepare", "regressions", "run_in_env", "run_specs", "side_by_side"]

KURA_PERF_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the kura_perf package
# The child: kura_perf from the same source as this process (first on its path), then `kura-perf run`.
CHILD_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
              "from kura_perf.cli.main import main; sys.exit(main(sys.argv[1:]))")
BISECT_METRICS = ("api_calls", "tokens", "peak_rss_mb", "wall_s", "cpu_s")


@dataclass
class Prepared:
    spec: ResolvedSpec
    env: SpecEnv


@dataclass
class SpecRun:
    prepared: Prepared
    run_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.prepared.spec.text


def prepare(texts: list[str], data_root: Path, constraints: Path | None = DEFAULT_CONSTRAINTS) -> list[Prepared]:
    """Parse, resolve and build (or find) every spec's environment, all before anything runs."""
    specs = [parse_spec(text) for text in texts]  # every syntax error first, before any pip call
    prepared = []
    for spec in specs:
        resolved = resolve(spec)
        env = ensure_env(resolved, data_root, constraints)
        log.info("kura env for %s: %s (%s, %s)", spec.text, env.folder, env.kura_version,
                 f"built in {env.manifest.get('build_s')} s" if env.built else "reused")
        prepared.append(Prepared(resolved, env))
    return prepared


def child_command(prepared: Prepared, scale: str, profile: str, run_id: str, stages: list[str] | None = None,
                  profiles_file: str | None = None) -> list[str]:
    cmd = [str(prepared.env.python), "-c", CHILD_BOOT, str(KURA_PERF_ROOT), "run", "--scale", scale,
           "--profile", profile, "--kura-spec-label", prepared.spec.text, "--run-id", run_id]
    if stages:
        cmd += ["--stages", *stages]
    if profiles_file:
        cmd += ["--profiles", profiles_file]
    return cmd


def run_in_env(prepared: Prepared, scale: str, profile: str, stages: list[str] | None = None,
               profiles_file: str | None = None, run_id: str | None = None, quiet: bool = True) -> tuple[str, int]:
    """One `kura-perf run` of the partition in the spec's environment: (its run id, its exit code). Its
    table goes to our stderr (quiet) so that our stdout is the comparison; the environment is inherited
    (the data root, the simulator, credentials by name), plus a placeholder OpenAI key when none is set
    (settings/third_party_env.py kura_child_env: Kura 0.5.0-0.5.2 cannot even be imported without one)."""
    run_id = run_id or str(uuid.uuid4())
    cmd = child_command(prepared, scale, profile, run_id, stages, profiles_file)
    done = subprocess.run(cmd, stdout=sys.stderr if quiet else None, env=kura_child_env())
    return run_id, done.returncode


def run_specs(prepared: list[Prepared], scale: str, profile: str, stages: list[str] | None = None,
              profiles_file: str | None = None, repeats: int = 1) -> list[SpecRun]:
    runs = []
    for item in prepared:
        run = SpecRun(item)
        for _ in range(repeats):
            run_id, code = run_in_env(item, scale, profile, stages, profiles_file)
            run.run_ids.append(run_id)
            if code != 0:
                run.failures.append(f"run {run_id} exited {code}")
        runs.append(run)
    return runs


def stage_figures(settings: RunSettings, run_ids: list[str]) -> pd.DataFrame:
    """The successful stage records of these runs (checks/versions.py RECORD_SQL's columns)."""
    if not run_ids:
        return pd.DataFrame(columns=["stage", "kura_spec"])
    marks = ", ".join("?" for _ in run_ids)
    return query(settings.paths.metrics, f"{RECORD_SQL} AND run_id IN ({marks}) ORDER BY started_at", list(run_ids))


def quality_levels(settings: RunSettings, run_ids: list[str]) -> pd.DataFrame | None:
    """The per-level quality rows of these runs with their spec; None when no clustering stage ran."""
    marks = ", ".join("?" for _ in run_ids)
    try:
        return query(settings.paths.metrics,
                     f"SELECT s.kura_spec, q.stage, q.level, q.truth_rank, q.ari FROM quality_levels q JOIN stage_runs s "
                     f"USING (record_id) WHERE q.run_id IN ({marks})", list(run_ids))
    except Exception:  # noqa: BLE001 - no quality_levels files yet: a table DuckDB cannot find
        return None


def side_by_side(settings: RunSettings, runs: list[SpecRun]) -> pd.DataFrame:
    """Per stage and spec: each figure (mean over repeats), its ratio to the first spec, and its verdict."""
    run_ids = [run_id for run in runs for run_id in run.run_ids]
    records = stage_figures(settings, run_ids)
    labels = {run.text: run.prepared.env.kura_version + _commit(run.prepared.spec) for run in runs}
    return compare_specs(records, [run.text for run in runs], labels, quality_levels(settings, run_ids))


def _commit(spec: ResolvedSpec) -> str:
    return "" if spec.spec.kind == "release" else f" @{spec.resolved[:10]}"


# -- bisection --------------------------------------------------------------------------------------------
@dataclass
class Probe:
    commit: str
    value: float | None
    bad: bool | None
    run_id: str | None = None


@dataclass
class BisectResult:
    first_bad: str
    last_good: str
    metric: str
    stage: str | None
    probes: list[Probe]
    candidates: int


def commits_between(repo: Path, good: str, bad: str) -> list[str]:
    """The commits after `good` up to and including `bad` on the ancestry path, oldest first."""
    spec = f"git:{repo}@{bad}"
    good_sha = resolve(parse_spec(f"git:{repo}@{good}")).resolved
    bad_sha = resolve(parse_spec(spec)).resolved
    done = subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "--ancestry-path", f"{good_sha}..{bad_sha}"],
                          capture_output=True, text=True)
    commits = done.stdout.split()
    if done.returncode != 0 or not commits or commits[-1] != bad_sha:
        raise KuraSpecError(f"--bisect {good} {bad}: {bad} does not descend from {good} in {repo}")
    return [good_sha, *commits]


def run_figure(settings: RunSettings, run_id: str, metric: str, stage: str | None) -> float | None:
    rows = stage_figures(settings, [run_id])
    if not len(rows):
        return None
    if stage is not None:
        rows = rows[rows["stage"] == stage]
    column = {"api_calls": "calls", "tokens": "tokens", "peak_rss_mb": "peak_mb", "wall_s": "wall_s",
              "cpu_s": "cpu_s"}[metric]
    values = rows[column].dropna()
    if not len(values):
        return None
    # A count adds up over the stages; peak memory is the run's highest; time adds up.
    return float(values.max() if metric == "peak_rss_mb" else values.sum())


def is_worse(value: float, good: float, metric: str) -> bool:
    """A count: any increase (deterministic for a corpus and seed); time or memory: the regression check's
    rule with the good commit's run as the history."""
    if metric in ("api_calls", "tokens"):
        return value > good
    return not compare(value, [good], metric="peak_rss_mb" if metric == "peak_rss_mb" else "wall_s").passed


def bisect(repo: Path, good: str, bad: str, settings: RunSettings, scale: str, profile: str,
           metric: str = "api_calls", stage: str | None = None, stages: list[str] | None = None,
           profiles_file: str | None = None, constraints: Path | None = DEFAULT_CONSTRAINTS) -> BisectResult:
    """Narrow a regression in `metric` between two commits of a local git repository to the first commit
    that has it, building and running only the commits binary search visits (the two ends plus about
    log2 of the commits between)."""
    if metric not in BISECT_METRICS:
        raise KuraPerfError(f"--metric {metric!r}: expected one of {', '.join(BISECT_METRICS)}")
    repo = Path(repo).resolve()
    commits = commits_between(repo, good, bad)
    probes: dict[str, Probe] = {}

    def measure(sha: str) -> float:
        prepared = prepare([f"git:{repo}@{sha}"], settings.paths.root, constraints)[0]
        run_id, code = run_in_env(prepared, scale, profile, stages, profiles_file)
        value = run_figure(settings, run_id, metric, stage)
        if code != 0 or value is None:
            raise KuraPerfError(f"--bisect: the run of commit {sha[:10]} failed (exit {code}); run id {run_id}")
        probes[sha] = Probe(sha, value, None, run_id)
        log.info("bisect: %s %s = %s", sha[:10], metric, value)
        return value

    good_value = measure(commits[0])
    bad_value = measure(commits[-1])
    probes[commits[0]].bad = False
    if not is_worse(bad_value, good_value, metric):
        probes[commits[-1]].bad = False
        raise KuraPerfError(f"--bisect: {bad} is not worse than {good} in {metric} ({bad_value} vs {good_value}); "
                            f"nothing to find")
    probes[commits[-1]].bad = True
    lo, hi = 0, len(commits) - 1  # commits[lo] good, commits[hi] bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        worse = is_worse(measure(commits[mid]), good_value, metric)
        probes[commits[mid]].bad = worse
        lo, hi = (lo, mid) if worse else (mid, hi)
    return BisectResult(commits[hi], commits[lo], metric, stage, list(probes.values()), len(commits) - 1)
