"""Kura versions side by side, and the commit that made one worse (issue 21; asv's `continuous` and `find`).

Each spec (kura_perf/kura_envs/spec.py) gets its cached environment (kura_envs/envs.py); every spec is
resolved and built BEFORE any stage runs, so a bad one is refused with pip's reason and nothing is run.
Then the same partition runs once per spec as `kura-perf run` started with the spec environment's
interpreter: the whole run (meter, stages, Dagster, the store) is the same code as any run, only the
`kura` it imports is the spec's. Its records go to the same store with kura_spec / kura_resolved set,
under a run id chosen here, and are read back to be compared.

Verdicts: time and peak memory use the regression checks' own noise-aware comparison
(checks/regression.py `compare`: over the threshold AND beyond the noise band of the first spec's runs)
-> slower / faster / same within noise. API calls and tokens are deterministic counts for a given
corpus and seed: more / fewer / same.
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
from kura_perf.errors import KuraPerfError, KuraSpecError
from kura_perf.kura_envs.envs import DEFAULT_CONSTRAINTS, SpecEnv, ensure_env
from kura_perf.kura_envs.spec import ResolvedSpec, parse_spec, resolve
from kura_perf.settings.run import RunSettings
from kura_perf.store import query

log = logging.getLogger("kura_perf")

KURA_PERF_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the kura_perf package
# The child: kura_perf from the same source as this process (first on its path), then `kura-perf run`.
CHILD_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
              "from kura_perf.cli.main import main; sys.exit(main(sys.argv[1:]))")
# (column, what it is, the regression metric whose noise rule gives its verdict, or None: a count)
FIGURES = (("wall_s", "wall s", "wall_s"), ("cpu_s", "CPU s", "wall_s"), ("peak_mb", "peak MB", "peak_rss_mb"),
           ("calls", "API calls", None), ("tokens", "tokens", None))
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
    (the data root, the simulator, credentials by name)."""
    run_id = run_id or str(uuid.uuid4())
    cmd = child_command(prepared, scale, profile, run_id, stages, profiles_file)
    done = subprocess.run(cmd, stdout=sys.stderr if quiet else None)
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
    """One row per successful stage record of these runs: run_id, stage and the compared figures."""
    if not run_ids:
        return pd.DataFrame()
    marks = ", ".join("?" for _ in run_ids)
    rows = query(settings.paths.metrics,
                 f"SELECT record_id, run_id, stage, started_at, wall_s, cpu_user_s + cpu_sys_s AS cpu_s, "
                 f"peak_rss_mb AS peak_mb, api_calls AS calls, tokens_in + tokens_out AS tokens, kura_spec, "
                 f"kura_resolved, kura_version FROM stage_runs WHERE run_id IN ({marks}) AND status = 'success' "
                 f"ORDER BY started_at", list(run_ids))
    return rows


def quality_by_level(settings: RunSettings, run_ids: list[str]) -> pd.DataFrame:
    """ARI per (stage, level) at each stage's finest truth level, averaged over the runs."""
    if not run_ids:
        return pd.DataFrame(columns=["stage", "quality"])
    marks = ", ".join("?" for _ in run_ids)
    try:
        rows = query(settings.paths.metrics,
                     f"SELECT stage, level, truth_rank, ari FROM quality_levels WHERE run_id IN ({marks})",
                     list(run_ids))
    except Exception:  # noqa: BLE001 - no quality_levels table yet (no clustering stage ran anywhere)
        return pd.DataFrame(columns=["stage", "quality"])
    if not len(rows):
        return pd.DataFrame(columns=["stage", "quality"])
    rows = rows[rows["truth_rank"] == rows.groupby("stage")["truth_rank"].transform("max")]
    means = rows.groupby(["stage", "level"])["ari"].mean().reset_index()
    text = means.groupby("stage").apply(
        lambda g: " ".join(f"L{int(r.level)} {r.ari:.2f}" for r in g.itertuples()), include_groups=False)
    return text.rename("quality").reset_index()


def verdict(values: list[float], baseline: list[float], metric: str | None) -> str:
    """faster / slower / same within noise (the regression check's rule, the baseline spec's runs as the
    history); for a count (metric None): more / fewer / same."""
    values = [v for v in values if v is not None and v == v]
    baseline = [v for v in baseline if v is not None and v == v]
    if not values or not baseline:
        return "-"
    value = sum(values) / len(values)
    if metric is None:
        first = sum(baseline) / len(baseline)
        return "same" if value == first else ("more" if value > first else "fewer")
    result = compare(value, baseline, metric=metric)
    if not result.passed:
        return "slower" if metric == "wall_s" else "larger"
    if result.noise_low is not None and value < result.noise_low and (result.ratio or 1) < 1 - 0.10:
        return "faster" if metric == "wall_s" else "smaller"
    return "same within noise"


def side_by_side(settings: RunSettings, runs: list[SpecRun]) -> pd.DataFrame:
    """Per stage and spec: each figure (mean over repeats), its ratio to the first spec, and its verdict."""
    figures = {run.text: stage_figures(settings, run.run_ids) for run in runs}
    quality = {run.text: quality_by_level(settings, run.run_ids) for run in runs}
    first = runs[0].text
    stages = list(dict.fromkeys(s for f in figures.values() if len(f) for s in f["stage"]))
    rows = []
    for stage in stages:
        base = figures[first]
        base = base[base["stage"] == stage] if len(base) else base
        for run in runs:
            mine = figures[run.text]
            mine = mine[mine["stage"] == stage] if len(mine) else mine
            row = {"stage": stage, "spec": run.text,
                   "kura": run.prepared.env.kura_version + _commit(run.prepared.spec), "runs": len(mine)}
            verdicts = []
            for column, _, metric in FIGURES:
                vals = mine[column].tolist() if len(mine) else []
                base_vals = base[column].tolist() if len(base) else []
                mean = _mean(vals)
                base_mean = _mean(base_vals)
                row[column] = mean
                row[f"{column} x"] = (mean / base_mean) if mean is not None and base_mean else None
                if run.text != first:
                    verdicts.append(f"{column.split('_')[0]} {verdict(vals, base_vals, metric)}")
            q = quality[run.text]
            match = q[q["stage"] == stage]["quality"].tolist() if len(q) else []
            row["quality (ARI per level)"] = match[0] if match else ""
            row["verdict"] = "baseline" if run.text == first else ", ".join(verdicts)
            rows.append(row)
    return pd.DataFrame(rows)


def regressions(table: pd.DataFrame) -> list[str]:
    """The (stage, spec) pairs whose verdict says worse: slower, larger, or more calls or tokens."""
    bad = []
    for row in table.itertuples():
        words = str(row.verdict)
        if any(w in words for w in ("slower", "larger", "calls more", "tokens more")):
            bad.append(f"{row.stage} {row.spec}: {words}")
    return bad


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else None


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
