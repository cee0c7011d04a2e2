"""Results committed as data (issue 19): the stage records behind every published figure, in the repo.

The way asv keeps its results: a `results/` folder at the repo root, one small file per published run,
each line one StageRecord as JSON (sorted keys). JSON lines rather than Parquet because these files are
reviewed and diffed in pull requests: a new run is a readable added file, a changed figure a changed
line, and git stores text well; at about 2-20 kB per stage record a run is small either way. Stage
outputs (embeddings, clusters) never go here, only the records.

Every record must say where and with what it was measured, or it cannot be compared with anything:
the host (fingerprint, CPU model, cores, RAM, kernel) and the code (git commit, "+dirty" when the
checkout had local changes; package_versions, the interpreter included). `kura-perf results add`
copies a run's records from a metrics store after checking that, and refuses contended records (the
box was busy, meter/host_load.py) unless asked; `kura-perf publish` refuses any file that lacks it.
Numbers are never edited here by hand: a new measurement is a new file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kura_perf.errors import KuraPerfError
from kura_perf.files.atomic import atomic_write_text
from kura_perf.meter.host_load import is_contended
from kura_perf.store.record import StageRecord, UnknownRecordField

SUFFIX = ".jsonl"
# The host fingerprint and the code version a record needs to be published.
HOST_FIELDS = ("host_fingerprint", "host_cpu", "host_cores", "host_ram_gb", "host_os")
VERSION_FIELDS = ("code_version", "package_versions")


class ResultsError(KuraPerfError):
    """A record that cannot be published or added (no host, no version, contended, unreadable)."""


def repo_results_dir() -> Path:
    """The checkout's results/ folder (beside kura_perf/), whatever the working directory."""
    return Path(__file__).resolve().parents[2] / "results"


def describe(record: StageRecord) -> str:
    return (f"record {record.record_id or '?'} ({record.stage or '?'}, {record.profile or '?'} "
            f"{record.scale or '?'}, run {record.run_id or '?'})")


def missing_provenance(record: StageRecord) -> str | None:
    """Why a record cannot be published: the host or code version fields it lacks, or None."""
    missing_host = [name for name in HOST_FIELDS if getattr(record, name) in (None, "")]
    if missing_host:
        return f"no host fingerprint ({', '.join(missing_host)} missing)"
    missing_version = [name for name in VERSION_FIELDS if getattr(record, name) in (None, "", "unknown")]
    if missing_version:
        return f"no code version ({', '.join(missing_version)} missing)"
    return None


def contention_reason(record: StageRecord) -> str | None:
    """Why a record is not a quiet-box measurement: the box was busy, or its load was never measured
    (a record from before the quiet-box protocol; a died record has no figures to disturb)."""
    if record.contended:
        if record.host_contention is not None and not is_contended(record.host_contention,
                                                                   other_cpu_s=record.host_other_cpu_s):
            return "contended (another run's stage ran beside it on this host)"
        share = f"{record.host_contention:.0%}" if record.host_contention is not None else "?"
        return f"contended (other processes took {share} of the box while it ran)"
    if record.contended is None and record.status != "died":
        return "host load not measured (a record from before the quiet-box protocol)"
    return None


def record_line(record: StageRecord) -> str:
    data = record.replace(quality_levels=[]).as_dict()  # per-level quality stays in the store
    return json.dumps(data, sort_keys=True, default=_json_default)


def _json_default(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


def run_file_name(records: list[StageRecord]) -> str:
    """<date>_<profile>_<scale>_<run id>.jsonl: sorted by name is sorted by date."""
    first = min(records, key=_order)
    day = f"{first.started_at:%Y-%m-%d}" if first.started_at else "undated"
    return f"{day}_{first.profile}_{first.scale}_{(first.run_id or 'norun')[:12]}{SUFFIX}"


def _order(record: StageRecord):
    return (record.started_at.isoformat() if record.started_at else "", record.stage or "", record.record_id or "")


@dataclass(frozen=True)
class ResultRecord:
    """One record of results/ and where it came from (file, line), for a refusal that names it."""

    record: StageRecord
    path: Path
    line: int


def read_results(results_dir: Path, *, check: bool = True) -> list[ResultRecord]:
    """Every record of results/*.jsonl, files in name order. check: refuse (ResultsError, naming the file
    and line) any record without host or version, so nothing is published that cannot be compared."""
    out: list[ResultRecord] = []
    folder = Path(results_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                record = StageRecord.from_json(text)
            except (ValueError, TypeError, UnknownRecordField) as exc:
                raise ResultsError(f"{path}, line {number}: not a stage record ({exc})") from None
            if check and (reason := missing_provenance(record)):
                raise ResultsError(f"{path}, line {number}: {describe(record)} has {reason}; publish refuses "
                                   "records that cannot be compared (add runs with `kura-perf results add`)")
            out.append(ResultRecord(record, path, number))
    return out


def store_records(metrics_dir: Path, run_ids: list[str] | None, latest: bool) -> dict[str, list[StageRecord]]:
    """The stage records of the named runs (or of the latest run) in a metrics store, per run id."""
    from kura_perf.store import query  # the store only when adding

    if latest:
        found = query(metrics_dir, "SELECT run_id FROM stage_runs WHERE run_id IS NOT NULL "
                                   "ORDER BY finished_at DESC NULLS LAST LIMIT 1")
        if found.empty:
            raise ResultsError(f"{metrics_dir}: the metrics store has no stage records (nothing to add)")
        run_ids = [str(found["run_id"].iloc[0])]
    runs: dict[str, list[StageRecord]] = {}
    for run_id in run_ids or []:
        # The record as stored (its own host-load `contended`), and how many other runs overlapped it
        # on the same host (the store's stage_runs_contended view): both disturb its timings.
        rows = query(metrics_dir, "SELECT s.*, coalesce(c.overlapping_runs, 0) AS overlapping_runs FROM stage_runs s "
                                  "LEFT JOIN stage_runs_contended c USING (record_id) WHERE s.run_id = ? "
                                  "ORDER BY s.started_at", [run_id])
        if rows.empty:
            raise ResultsError(f"{metrics_dir}: no stage records of run {run_id} (see `kura-perf sql "
                               "\"SELECT DISTINCT run_id, profile, scale FROM stage_runs\"`)")
        records = []
        for row in rows.to_dict("records"):
            overlaps = int(row.pop("overlapping_runs") or 0)
            record = StageRecord.from_row(row)
            if overlaps and not record.contended:  # another run beside it: contended, whatever /proc said
                record = record.replace(contended=True)
            records.append(record)
        runs[run_id] = sorted(records, key=_order)
    return runs


def add_runs(runs: dict[str, list[StageRecord]], results_dir: Path, *, allow_contended: bool = False) -> list[Path]:
    """Write each run's records as one file in results_dir. Every record is checked before anything is
    written: one refused record refuses the whole command (ResultsError, one line), nothing half-added."""
    for records in runs.values():
        for record in records:
            if reason := missing_provenance(record):
                raise ResultsError(f"{describe(record)} has {reason}: refused, nothing added")
            if not allow_contended and (reason := contention_reason(record)):
                raise ResultsError(f"{describe(record)} is {reason}: refused, nothing added (measure on a quiet "
                                   "box with `kura-perf matrix --wait-quiet`, or pass --allow-contended)")
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for records in runs.values():
        path = folder / run_file_name(records)
        atomic_write_text(path, "".join(record_line(r) + "\n" for r in records))
        written.append(path)
    return written
