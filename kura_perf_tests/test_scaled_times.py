"""Times measured against a sped-up simulator (sim_speed_factor != 1) are labelled 'scaled xN, not a
prediction' wherever they are shown: the report's headline and stage breakdown, and the run's table."""

from __future__ import annotations

from kura_perf.cli.printing import print_records
from kura_perf.report.build import build_report
from kura_perf.settings.paths import Paths
from kura_perf.store import write_records
from kura_perf.store.record import StageRecord
from kura_perf_tests.test_report import STAGES, _stage_record

LABEL = "scaled x10, not a prediction"


def _run(i0: int, profile: str, factor: float | None) -> list[dict]:
    return [_stage_record(i0 + k, f"{profile}-run", stage, 100, "100", profile=profile, sim_speed_factor=factor)
            for k, stage in enumerate(STAGES)]


def test_the_report_labels_scaled_times_and_only_those(tmp_path):
    records = _run(0, "scaled-sim", 10.0) + _run(10, "real-speed-sim", 1.0) + _run(20, "offline", None)
    write_records(tmp_path / "metrics", "stage_runs", records)
    result = build_report(Paths(tmp_path))
    headline = result.headline_markdown
    rows = {line.split("|")[1].strip(): line for line in headline.splitlines() if line.startswith("|")}
    assert LABEL in rows["scaled-sim"]
    assert "scaled" not in rows["real-speed-sim"] and "scaled" not in rows["offline"]
    page = result.index_html.read_text(encoding="utf-8")
    # the headline row and one stage-breakdown cell per stage of the scaled profile
    assert page.count(LABEL) >= 1 + len(STAGES)


def test_the_runs_table_says_which_times_are_scaled(capsys):
    rows = [StageRecord.from_dict(r).as_row() for r in _run(0, "scaled-sim", 10.0)[:2] + _run(5, "x", 1.0)[:1]]
    print_records(rows)
    out = capsys.readouterr().out
    assert out.count(LABEL) == 2 and "sim_speed_factor" in out
