"""What a scenario left behind, and its outcome: survived / failed_cleanly / lost_data.

- survived: every pipeline exited 0 with a success record for every stage it ran, no orphans.
- failed_cleanly: a pipeline failed, but the failure is recorded with a clear error (a non-success
  stage record with its message, or the CLI's one-line refusal before any stage), no record is
  missing, no figure is wrong, no temp file is left, no stage output is half-written, no traceback.
- lost_data: anything else: a stage that ran has no record, a recorded figure disagrees with the
  file on disk, an output is partial, a temp file is orphaned, a bare traceback reached the user, or
  the process failed with nothing recorded about the failure (e.g. an abort after its last stage).

Expected records per pipeline: one per stage that succeeded, plus one for the stage it stopped in
when it did not exit 0 (unless the CLI refused it before any stage). The next command start (`kura-perf
db` runs in the home first) may turn a dead stage's trace into a record: that counts as found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kura_perf.errors import StageError
from kura_perf.experiments.stress.pipelines import PipelineRun
from kura_perf.files.atomic import TEMP_MARK
from kura_perf.files.outputs import _check_file, _file_name, read_manifest, stage_bytes
from kura_perf.store import query

if TYPE_CHECKING:  # pandas is imported when a home is inspected, not when the CLI builds its parser
    import pandas as pd

SURVIVED, FAILED_CLEANLY, LOST_DATA = "survived", "failed_cleanly", "lost_data"
OUTCOMES = (SURVIVED, FAILED_CLEANLY, LOST_DATA)
# kura_perf's own temp files (atomic.py's pid-and-uuid names) and any other writer's .tmp files.
TEMP_PATTERNS = (f"*{TEMP_MARK}*", ".*.tmp", "*.tmp", ".kura-perf-report-building-*")
STAGE_NAMES = ("conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections")


@dataclass
class Findings:
    records_expected: int = 0
    records_found: int = 0
    orphans: list[str] = field(default_factory=list)
    partial_outputs: list[str] = field(default_factory=list)
    wrong_figures: list[str] = field(default_factory=list)
    tracebacks: int = 0
    unexplained_failures: list[str] = field(default_factory=list)  # a failed pipeline with no clear error
    failures: list[str] = field(default_factory=list)  # the clear errors that were recorded

    def outcome(self, runs: list[PipelineRun]) -> str:
        lost = (self.records_found < self.records_expected or self.orphans or self.partial_outputs
                or self.wrong_figures or self.tracebacks or self.unexplained_failures)
        if lost:
            return LOST_DATA
        if all(r.exit_code == 0 for r in runs):
            return SURVIVED
        return FAILED_CLEANLY

    def message(self, outcome: str) -> str:
        parts = []
        if self.records_found < self.records_expected:
            parts.append(f"{self.records_expected - self.records_found} stage record(s) missing")
        if self.orphans:
            parts.append(f"orphan temp files: {', '.join(self.orphans[:3])}")
        if self.partial_outputs:
            parts.append(f"partial outputs: {'; '.join(self.partial_outputs[:3])}")
        if self.wrong_figures:
            parts.append(f"wrong figures: {'; '.join(self.wrong_figures[:3])}")
        if self.tracebacks:
            parts.append(f"{self.tracebacks} pipeline(s) ended in a traceback")
        parts += self.unexplained_failures[:3]
        if outcome != LOST_DATA and self.failures:
            parts.append("recorded: " + "; ".join(dict.fromkeys(self.failures))[:600])
        return "; ".join(parts) or "all stages succeeded, every record present"


def _orphans(home: Path) -> list[str]:
    found = set()
    for pattern in TEMP_PATTERNS:
        found.update(str(p.relative_to(home)) for p in home.rglob(pattern))
    return sorted(found)


def _partial_outputs(storage: Path) -> list[str]:
    problems = []
    for manifest in sorted(storage.glob("*/*/*.manifest.json")):
        folder, stage = manifest.parent, manifest.name.removesuffix(".manifest.json")
        try:
            body = read_manifest(folder, stage)
            for key in body["tables"]:
                _check_file(folder / _file_name(stage, key, ".parquet"), body, stage)
            for key in body["arrays"]:
                _check_file(folder / _file_name(stage, key, ".npy"), body, stage)
        except StageError as exc:
            problems.append(str(exc))
    return problems


def _wrong_figures(records: "pd.DataFrame", storage: Path) -> list[str]:
    """Success records whose bytes_written differs from the partition's files now on disk. The stress
    pipelines are deterministic (fixed seed, offline or simulated models), so every successful run of a
    partition writes the same bytes: a difference means a record measured someone else's file."""

    wrong = []
    ok = records[records["status"] == "success"] if len(records) else records
    for row in ok.itertuples():
        folder = storage / row.profile / row.scale
        on_disk = stage_bytes(folder, row.stage)
        if on_disk and row.bytes_written != on_disk:
            wrong.append(f"{row.profile}/{row.scale} {row.stage}: recorded {row.bytes_written} bytes, "
                         f"{on_disk} on disk (run {row.run_id[:8]})")
    return wrong


def expected_records(run: PipelineRun, successes: int) -> int:
    """One record per stage that succeeded, plus the stage it stopped in. A run that printed which steps
    failed says whether that was a stage (its record is due) or only a check step (then the next stage
    never started); for a killed run, the running markers it left say whether it was inside a stage
    (none: it died before its first stage); without that evidence it is assumed to have been in one."""
    if run.exit_code == 0:
        return len(run.stages) if run.stages else successes
    if run.refused:
        return 0
    if run.failed_steps and not any(step in (run.stages or STAGE_NAMES) for step in run.failed_steps):
        return successes
    if run.running_markers is not None and not run.failed_steps:  # killed: was it inside a stage?
        return successes + run.running_markers
    return min(successes + 1, len(run.stages)) if run.stages else successes + 1


def inspect_home(data_home: Path, runs: list[PipelineRun]) -> Findings:
    """Compare what the pipelines should have recorded with what the home holds."""
    import pandas as pd

    f = Findings()
    records = query(data_home / "metrics", "SELECT * FROM stage_runs") if (data_home / "metrics").is_dir() else None
    if records is None or not len(records):
        records = pd.DataFrame(columns=["run_id", "stage", "status", "error_message", "profile", "scale",
                                        "bytes_written"])
    known = {r.run_id for r in runs if r.run_id}
    unattributed = records[~records["run_id"].isin(known)]  # pipelines that died before printing their id
    for run in runs:
        mine = records[records["run_id"] == run.run_id] if run.run_id else unattributed
        unknown = sum(1 for r in runs if not r.run_id)
        successes = int((mine["status"] == "success").sum()) if run.run_id or unknown == 1 else 0
        f.records_expected += expected_records(run, successes)
        if run.traceback:
            f.tracebacks += 1
        if run.exit_code != 0:
            errors = mine.loc[mine["status"] != "success", "error_message"].dropna().tolist()
            if run.refused:
                f.failures.append(run.error_line())
            elif errors:
                f.failures += [str(e)[:200] for e in errors]
            else:
                why = "timed out" if run.timed_out else f"exit {run.exit_code}"
                after = (f" after all {successes} stage(s) were recorded" if run.stages and successes >= len(run.stages)
                         else "")
                f.unexplained_failures.append(f"a pipeline failed ({why}){after} with no failure record: "
                                              f"{run.error_line()}")
    f.records_found = len(records)
    f.orphans = _orphans(data_home) if data_home.is_dir() else []
    storage = data_home / "storage"
    f.partial_outputs = _partial_outputs(storage) if storage.is_dir() else []
    f.wrong_figures = _wrong_figures(records, storage) if storage.is_dir() and len(records) else []
    return f
