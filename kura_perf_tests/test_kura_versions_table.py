"""The side-by-side table of Kura specs (checks/versions.py), the report's "Kura versions" section and
the nightly schedule for Kura, from synthetic records: no environment is built here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dagster import build_schedule_context

from kura_perf.checks.versions import latest_comparisons, regressions, verdict
from kura_perf.defs.kura_versions import BASELINE, build_kura_nightly_schedule, nightly_specs
from kura_perf.errors import KuraSpecError
from kura_perf.report.build import build_report
from kura_perf.settings.paths import Paths
from kura_perf.store import write_records
from kura_perf_tests.test_report import T0, _stage_record


def _records(run_id: str, spec: str, resolved: str, hour: int, calls: int, wall: float, peak: float) -> list[dict]:
    out = []
    for j, stage in enumerate(("conversations", "summaries")):
        record = _stage_record(hour, run_id, stage, 100, "100", profile="kura-tier5", backend="kura",
                               kura_spec=spec, kura_resolved=resolved, kura_version="0.5.4",
                               api_calls=calls if stage == "summaries" else None,
                               tokens_in=10 * calls if stage == "summaries" else None,
                               tokens_out=calls if stage == "summaries" else None)
        record.update(record_id=f"{run_id}-{stage}", wall_s=wall, peak_rss_mb=peak,
                      started_at=T0 + timedelta(hours=hour, minutes=j))
        out.append(record)
    return out


@pytest.fixture
def store(tmp_path):
    write_records(tmp_path / "metrics", "stage_runs",
                  [*_records("a1", "kura==0.5.4", "0.5.4", 1, 100, 1.0, 300.0),
                   *_records("b1", "path:/src/kura", "abc123 tree 1", 2, 200, 1.01, 302.0)])
    return tmp_path


def test_the_verdicts_are_the_regression_rule_and_exact_counts():
    assert verdict([2.0], [1.0], "wall_s") == "slower"
    assert verdict([0.5], [1.0], "wall_s") == "faster"
    assert verdict([1.02], [1.0], "wall_s") == "same within noise"
    assert verdict([900.0], [300.0], "peak_rss_mb") == "larger"
    assert verdict([200], [100], None) == "more" and verdict([100], [100], None) == "same"


def test_twice_the_calls_is_a_regression_and_the_same_time_is_not(store):
    [(profile, scale, table, specs, _)] = latest_comparisons(store / "metrics")
    assert (profile, scale, specs) == ("kura-tier5", "100", ["kura==0.5.4", "path:/src/kura"])
    row = table[(table["stage"] == "summaries") & (table["spec"] == "path:/src/kura")].iloc[0]
    assert row["calls x"] == 2.0 and "calls more" in row["verdict"] and "wall same within noise" in row["verdict"]
    assert row["kura"] == "0.5.4 @abc123 tre"
    assert regressions(table) == [f"summaries path:/src/kura: {row['verdict']}"]


def test_the_report_has_a_kura_versions_section(store):
    html = build_report(Paths(store)).index_html.read_text(encoding="utf-8")
    assert "Kura versions" in html and "path:/src/kura" in html and "calls more" in html


def test_the_report_says_how_to_fill_an_empty_kura_versions_section(tmp_path):
    write_records(tmp_path / "metrics", "stage_runs", [_stage_record(1, "r", "summaries", 100, "100")])
    html = build_report(Paths(tmp_path)).index_html.read_text(encoding="utf-8")
    assert "no Kura spec measured yet" in html and "kura-perf versions" in html


def test_the_nightly_for_kura_compares_the_specs_with_the_last_release():
    assert nightly_specs("path:/src/kura") == [BASELINE, "path:/src/kura"]
    assert nightly_specs(None) == []
    with pytest.raises(KuraSpecError, match="kura>=1"):
        nightly_specs("kura>=1")
    schedule = build_kura_nightly_schedule("path:/src/kura")
    context = build_schedule_context(scheduled_execution_time=T0)
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.run_config["ops"]["kura_versions_op"]["config"]["specs"] == ["kura", "path:/src/kura"]
    skipped = build_kura_nightly_schedule(None).evaluate_tick(context)
    assert not skipped.run_requests and "names no Kura spec" in skipped.skip_message


def _lint(path) -> None:
    import subprocess

    from kura_perf_tests.test_nightly import _actionlint

    result = subprocess.run([_actionlint(), "-no-color", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kura_versions_workflow_and_the_readme_adoption_lint_and_fail_on_a_regression(tmp_path):
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    workflow = root / ".github" / "workflows" / "kura-versions.yml"
    _lint(workflow)
    readme = (root / "README.md").read_text()
    block = re.search(r"<!-- kura-adoption-workflow -->\n```yaml\n(.*?)```", readme, re.S).group(1)
    adoption = tmp_path / ".github" / "workflows" / "kura-perf.yml"
    adoption.parent.mkdir(parents=True)
    adoption.write_text(block)
    _lint(adoption)
    for text in (workflow.read_text(), block):
        runs = " ".join(step.get("run", "") for job in yaml.safe_load(text)["jobs"].values() for step in job["steps"])
        assert re.search(r"kura-perf versions --scale 1k --profile kura-tier5 --fail-on-regression\s+\\?\s*kura "
                         r"\"path:\$GITHUB_WORKSPACE/kura", runs), runs
