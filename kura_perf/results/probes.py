"""Kura probes committed as data: results/probes/*.json, one `kura-perf kura-probe` record per file
(experiments/kura_probe.py), and the table `publish` makes of them.

A probe record is published under the same rules as a stage record (results/records.py): it must name its
host and its code version, and a contended one is refused by `results add --probe` and left out of the
table. The table keeps what was measured apart from what was projected: each CPU step says whether it was
measured whole, projected from a sample of its calls (mean x clusters) or stopped at its time limit, and
the naming requests' waiting is always predict's projection.
"""

from __future__ import annotations

import json
from pathlib import Path

from kura_perf.experiments.kura_probe import FINISHED, stage_seconds
from kura_perf.files.atomic import atomic_write_text
from kura_perf.report import fmt
from kura_perf.results.records import HOST_FIELDS, ResultsError

FOLDER = "probes"
SCHEMA = "kura-probe/1"
REQUIRED = ("profile", "scale", "scale_n", "phases", *HOST_FIELDS, "code_version", "package_versions")


def probe_problem(body: dict) -> str | None:
    """Why a probe record cannot be published, or None."""
    if body.get("schema") != SCHEMA:
        return f"not a {SCHEMA} record (schema {body.get('schema')!r})"
    missing = [key for key in REQUIRED if body.get(key) in (None, "", "unknown")]
    if missing:
        return f"no {', '.join(missing)}"
    return None


def _load(path: Path) -> dict:
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable probe record ({exc})") from None
    if not isinstance(body, dict):
        raise ResultsError(f"{path}: not a probe record (a JSON object is expected)")
    return body


def read_probes(results_dir: Path) -> list[tuple[Path, dict]]:
    """Every probe of results/probes/, in name order; one without host or version is refused, naming it."""
    folder = Path(results_dir) / FOLDER
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        body = _load(path)
        if reason := probe_problem(body):
            raise ResultsError(f"{path}: {reason}; publish refuses probes that cannot be compared")
        out.append((path, body))
    return out


def add_probes(paths: list[Path], results_dir: Path, *, allow_contended: bool = False) -> list[Path]:
    """Copy probe records into results/probes/ after checking all of them (one refusal adds nothing)."""
    bodies = []
    for path in paths:
        body = _load(path)
        if reason := probe_problem(body):
            raise ResultsError(f"{path}: {reason}: refused, nothing added")
        if body.get("contended") and not allow_contended:
            raise ResultsError(f"{path}: contended (other processes took {body.get('host_contention', 0):.0%} of the "
                               "box): refused, nothing added (measure on a quiet box, or pass --allow-contended)")
        bodies.append((Path(path), body))
    folder = Path(results_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path, body in bodies:
        target = folder / path.name
        atomic_write_text(target, json.dumps(body, indent=1, sort_keys=True) + "\n")
        written.append(target)
    return written


def _phase_cells(phase: dict) -> tuple[str, str]:
    """(what was measured, the stage's share) for one CPU step."""
    measured = (f"{phase['status']}: {fmt.seconds(phase['wall_s'])} wall, {fmt.seconds(phase['cpu_s'])} CPU, "
                f"peak {fmt.megabytes(phase['peak_rss_mb'])}")
    if phase["status"] != "finished":
        return measured, f"> {fmt.seconds(phase['wall_s'])} (did not finish)"
    if phase.get("sampled"):
        mean = phase["detail"]["per_call_s"]["mean"]
        measured += f"; {phase['sampled']} of {phase['clusters']:,} calls, {mean * 1000:,.1f} ms each"
        return measured, f"{fmt.seconds(phase['stage_s'])} *(projected: mean x {phase['clusters']:,})*"
    measured += f"; the call alone {fmt.seconds(phase['work_wall_s'])}"
    return measured, f"{fmt.seconds(phase['stage_s'])} (measured)"


def probes_lines(results_dir: Path, measured_stage_s: dict[tuple[str, int], float] | None = None) -> list[str]:
    """The README lines for the committed probes (none when there are none); contended ones left out.
    measured_stage_s: (profile, conversations) -> the clusters stage's measured work time where a whole
    stage was recorded at that scale, shown beside the probe's total as its check."""
    probes = [(p, b) for p, b in read_probes(results_dir) if not b.get("contended")]
    if not probes:
        return []
    rows = ["| Profile (inputs) | Conversations | Kura | Step (Kura's call) | Measured on this host | "
            "Share of the clusters stage |", "|---|---|---|---|---|---|"]
    for _, body in probes:
        who = body["profile"] + (f" ({body['inputs_from']})" if body.get("inputs_from") not in (None, body["profile"])
                                 else "")
        scale = fmt.conversations(body["scale_n"])
        for phase in body["phases"]:
            measured, share = _phase_cells(phase)
            rows.append(f"| {who} | {scale} | {body.get('kura_version') or '?'} | {phase['phase']} "
                        f"({phase.get('call') or '—'}) | {measured} | {share} |")
        naming = body.get("naming")
        total, stopped = stage_seconds(body["phases"], naming)
        unfinished = [phase["phase"] for phase in stopped]
        if naming:
            rows.append(f"| {who} | {scale} | {body.get('kura_version') or '?'} | naming requests | not run "
                        f"({naming['calls']:,} requests; {naming['source']}) | {fmt.seconds(naming['seconds'])} "
                        f"*(projected: kura-perf predict, {naming['binds']} binds)* |")
        stage = (f"≥ {fmt.seconds(total)}: {', '.join(unfinished)} did not finish" if unfinished
                 else f"≈ {fmt.seconds(total)} *(measured CPU steps + projected waiting)*")
        whole = (measured_stage_s or {}).get((body["profile"], int(body["scale_n"])))
        check = f"; the whole stage measured at this scale: {fmt.seconds(whole)}" if whole is not None else ""
        rows.append(f"| {who} | {scale} | {body.get('kura_version') or '?'} | **clusters stage** | "
                    f"contention {body['host_contention']:.1%}{check} | **{stage}** |")
    return ["", "**Kura's clusters stage where it cannot be watched to its end: its CPU steps measured, its naming "
            "waiting projected** (`kura-perf kura-probe`)", "", *rows, "",
            "Each CPU step runs Kura's own call on the partition's stored summaries and embeddings, in a process "
            "of its own (CPU and peak from the kernel's rusage); contrastive sampling is timed on a random sample "
            "of clusters and multiplied out (every call lists all other clusters' summaries, so each costs the "
            "same); the naming requests are not sent: their waiting is `kura-perf predict`'s."]


def probed_stage_times(results_dir: Path):
    """(profile, conversations) -> the clusters stage's time from the uncontended probes there, for the
    breaking-points table (report/breaking.py ProbedStageTime): the finished steps' shares plus the naming
    waiting; a step stopped at its limit counts with its wall and makes the figure a lower bound. The
    latest probe of a partition wins."""
    from kura_perf.report.breaking import ProbedStageTime

    out = {}
    for _, body in read_probes(results_dir):
        if body.get("contended"):
            continue
        seconds, stopped = stage_seconds(body["phases"], body.get("naming"))
        parts = [f"{phase['phase']} {phase['basis']}" if phase["status"] == FINISHED
                 else f"{phase['phase']} stopped after {fmt.seconds(phase['wall_s'])}" for phase in body["phases"]]
        if body.get("naming"):
            parts.append("naming waiting projected")
        out[(body["profile"], int(body["scale_n"]))] = ProbedStageTime(
            "clusters", int(body["scale_n"]), seconds, bool(stopped), "Kura's steps by kura-perf kura-probe: " + ", ".join(parts))
    return out
