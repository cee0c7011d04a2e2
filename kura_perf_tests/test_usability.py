"""Kura's checkpoint formats, error clarity, grading rules, line counts and the report/SQL over them."""

import json

import pytest

from kura_perf.experiments.usability.error_grading import grade
from kura_perf.experiments.usability.examples import count_loc, example_loc

# -- grading rules on known messages -----------------------------------------------------------------------
PYDANTIC_MISSING = ("1 validation error for Conversation\nchat_id\n  Field required [type=missing, "
                    "input_value={'created_at': '2024'}, input_type=dict]")
OPENAI_NO_KEY = ("Missing credentials. Please pass an `api_key`, `workload_identity`, `admin_api_key`, or set the "
                 "`OPENAI_API_KEY` or `OPENAI_ADMIN_KEY` environment variable.")


def test_pydantic_missing_field_names_it_and_says_required():
    g = grade("error", PYDANTIC_MISSING, "ValidationError", "pydantic.main", ("chat_id",))
    assert (g.names_subject, g.says_expected, g.suggests_fix, g.raw_traceback) == (True, True, False, False)
    assert (g.score, g.grade) == (3, "clear")


def test_bare_key_error_is_a_raw_traceback():
    g = grade("error", "'chat_messages'", "KeyError", "kura.types.conversation", ("chat_messages",))
    assert g.raw_traceback and g.names_subject and not g.says_expected
    assert (g.score, g.grade) == (1, "poor")


def test_missing_key_message_suggests_the_fix():
    g = grade("error", OPENAI_NO_KEY, "OpenAIError", "openai._client", ("OPENAI_API_KEY",))
    assert g.suggests_fix and g.names_subject and not g.raw_traceback


def test_builtin_error_from_a_library_is_raw_but_from_kura_is_not():
    numpy_msg = "setting an array element with a sequence. The requested array has an inhomogeneous shape"
    assert grade("error", numpy_msg, "ValueError", "numpy.core.numeric", ("embedding",)).raw_traceback
    assert not grade("error", "Empty summaries list provided", "ValueError", "kura.cluster",
                     ("summaries",)).raw_traceback
    assert grade("error", "Expecting value: line 1 column 71", "JSONDecodeError", "json.decoder",
                 ("conversations.json",)).grade == "poor"


def test_hang_and_silent_acceptance_score_zero():
    assert grade("hang", "no answer within 3 s", None, None, ("x",)).grade == "hang"
    assert grade("hang", "no answer within 3 s", None, None, ("x",)).score == 0
    accepted = grade("accepted", None, None, None, ("messages",))
    assert (accepted.grade, accepted.score) == ("silent", 0)
    logged = grade("silent", "Failed to load checkpoint from /x/summaries.parquet: bad", "logged", "kura",
                   ("summaries.parquet",))
    assert logged.grade == "silent" and logged.names_subject


# -- lines of code ---------------------------------------------------------------------------------------------
def test_count_loc_skips_blanks_comments_and_docstrings():
    source = '"""Module doc\nover two lines."""\n# a comment\n\nx = (1,\n     2)  # trailing\n\n' \
             'def f():\n    """Doc."""\n    return x\n'
    assert count_loc(source) == 4  # x = (1, / 2) / def f(): / return x


def test_example_loc_is_counted_from_the_files(tmp_path):
    counts = {e.name: e for e in example_loc()}
    assert set(counts) == {"basic", "advanced"}
    for e in counts.values():
        source = e.path.read_text()
        assert 0 < e.code_lines < e.total_lines
        assert count_loc(source + "\n# more comment\n\n") == e.code_lines
        assert count_loc(source + "print('one more')\n") == e.code_lines + 1
    assert counts["advanced"].code_lines > counts["basic"].code_lines


# -- checkpoint formats ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_rows(tmp_path_factory):
    """All three formats in this process at 30 conversations (Kura imported once for the module)."""
    from kura_perf.experiments.usability.checkpoints import FORMATS, measure_format
    from kura_perf.experiments.usability.records import new_row

    base = tmp_path_factory.mktemp("ckpt")
    rows = []
    for fmt in FORMATS:
        rows += [new_row("run-ckpt", **r) for r in measure_format(fmt, "100", base / fmt, n=30)]
    return rows


def test_each_format_records_every_kind(checkpoint_rows):
    from kura_perf.experiments.usability.kura_objects import KINDS

    for fmt in ("jsonl", "parquet", "hf_datasets"):
        mine = [r for r in checkpoint_rows if r["format"] == fmt]
        assert [r["kind"] for r in mine] == list(KINDS)
        for r in mine:
            assert r["status"] in ("success", "lossy", "failed")
            assert r["items"] > 0 and r["write_peak_rss_mb"] >= r["write_rss_start_mb"] > 0
            if r["status"] != "success":
                assert r["error_message"]


def test_jsonl_round_trips_and_its_bytes_are_the_files(checkpoint_rows, tmp_path):
    jsonl = [r for r in checkpoint_rows if r["format"] == "jsonl"]
    assert all(r["status"] == "success" and r["roundtrip_equal"] == 1.0 for r in jsonl)
    assert all(r["items_read"] == r["items"] for r in jsonl)
    assert all(r["bytes"] > 0 for r in jsonl)


def test_parquet_reload_failure_is_recorded_with_kuras_logged_error(checkpoint_rows):
    summaries = next(r for r in checkpoint_rows if r["format"] == "parquet" and r["kind"] == "summaries")
    assert summaries["status"] == "failed" and summaries["read_status"] == "failed"
    assert "load_checkpoint returned None" in summaries["error_message"]
    assert "Failed to load checkpoint" in summaries["error_message"]  # what Kura itself logged


def test_checkpoint_rows_are_queryable_with_kura_perf_sql(checkpoint_rows, kp_home, capsys):
    from kura_perf.cli.main import main
    from kura_perf.store import write_records

    write_records(kp_home / "metrics", "checkpoint_results", checkpoint_rows)
    assert main(["sql", "SELECT format, count(*) AS n, count(*) FILTER (WHERE status = 'success') AS ok "
                        "FROM checkpoint_results GROUP BY format ORDER BY format", "--format", "json"]) == 0
    got = {r["format"]: (r["n"], r["ok"]) for r in json.loads(capsys.readouterr().out)}
    assert set(got) == {"jsonl", "parquet", "hf_datasets"}
    assert got["jsonl"] == (4, 4) and got["parquet"][1] < 4


@pytest.mark.slow
def test_checkpoint_asset_runs_a_worker_and_records_rows(kp_home):
    """The Dagster asset through the real worker subprocess (/usr/bin/time -v, du) for one format."""
    from dagster import materialize

    from kura_perf.defs.resources import KuraPerfResource
    from kura_perf.defs.usability import kura_checkpoint_formats
    from kura_perf.store import query

    result = materialize([kura_checkpoint_formats], resources={"kura_perf": KuraPerfResource(home=str(kp_home))},
                         run_config={"ops": {"kura_checkpoint_formats": {"config": {"scales": ["100"],
                                                                                     "formats": ["parquet"]}}}})
    assert result.success
    rows = query(kp_home / "metrics", "SELECT * FROM checkpoint_results ORDER BY kind")
    assert len(rows) == 4 and set(rows["format"]) == {"parquet"}
    assert (rows["scale_n"] == 100).all() and rows["dir_du_bytes"].notna().all()
    assert rows["dir_du_bytes"].iloc[0] >= rows["bytes"].sum()  # du of the folder holds every kind's files
    assert (rows["status"] == "failed").any()
    assert not (kp_home / "usability" / "checkpoints").exists() or not any(
        (kp_home / "usability" / "checkpoints").iterdir())  # checkpoint folders are cleaned up


# -- error clarity ---------------------------------------------------------------------------------------------
def test_the_catalogue_has_at_least_15_cases_each_with_a_driver():
    from kura_perf.experiments.usability.error_cases import CASES
    from kura_perf.experiments.usability.error_clarity import DRIVERS

    assert len(CASES) >= 15
    assert len({c.case_id for c in CASES}) == len(CASES)
    assert all(c.driver in DRIVERS and c.subjects for c in CASES)
    assert {"input", "configuration", "api", "checkpoint", "clustering"} <= {c.category for c in CASES}


@pytest.mark.slow
def test_error_catalogue_grades_kuras_errors(tmp_path):
    from kura_perf.experiments.usability.error_clarity import run_error_catalogue
    from kura_perf.report.usability import error_table

    cases = ["missing_chat_id", "claude_dump_missing_field", "missing_api_key", "rate_limit_storm",
             "parquet_checkpoint_reload", "zero_concurrency"]
    rows = run_error_catalogue(tmp_path, cases=cases, max_timeout_s=20.0)
    by = {r["case_id"]: r for r in rows}
    assert list(by) == cases
    assert by["missing_chat_id"]["error_type"] == "ValidationError" and by["missing_chat_id"]["grade"] == "clear"
    assert by["claude_dump_missing_field"]["error_type"] == "KeyError"
    assert by["claude_dump_missing_field"]["raw_traceback"]
    assert "OPENAI_API_KEY" in by["missing_api_key"]["error_message"]
    assert "429" in by["rate_limit_storm"]["error_message"]
    assert by["parquet_checkpoint_reload"]["outcome"] == "silent"  # Kura logs the failure and recomputes
    assert by["zero_concurrency"]["outcome"] == "hang" and by["zero_concurrency"]["score"] == 0
    assert all(0 <= r["score"] <= 4 and r["run_id"] == rows[0]["run_id"] for r in rows)
    assert not any(tmp_path.iterdir())  # the cases' scratch files are removed
    import pandas as pd

    table = error_table(pd.DataFrame(rows))
    assert len(table.rows) == len(cases)


def test_usability_assets_are_wired_in_the_definitions():
    from kura_perf.definitions import defs

    groups = {spec.key.to_user_string(): spec.group_name for spec in defs.resolve_all_asset_specs()}
    assert groups["kura_checkpoint_formats"] == groups["kura_error_clarity"] == "kura_usability"


def test_unknown_format_or_scale_is_refused_before_any_work(tmp_path):
    from kura_perf.errors import KuraPerfError
    from kura_perf.experiments.usability.checkpoints import run_checkpoint_benchmark

    with pytest.raises(KuraPerfError, match="unknown checkpoint format.*jsonl, parquet, hf_datasets"):
        run_checkpoint_benchmark(["100"], ["csv"], workdir=tmp_path)
    with pytest.raises(KuraPerfError, match="unknown scale '2k'"):
        run_checkpoint_benchmark(["2k"], workdir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_report_sections_show_the_stored_usability_rows(checkpoint_rows, kp_home):
    from kura_perf.report.html import render_section
    from kura_perf.report.usability import usability_sections
    from kura_perf.store import write_records

    metrics = kp_home / "metrics"
    write_records(metrics, "checkpoint_results", checkpoint_rows)
    empty = [render_section(s) for s in usability_sections(metrics, None)]
    assert "kura-perf onboarding" in empty[1] and "kura-perf error-clarity" in empty[1]
    checkpoints, usability = usability_sections(metrics, checkpoint_rows[0]["host_fingerprint"])
    page = render_section(checkpoints)
    for cls in ("JSONLCheckpointManager", "ParquetCheckpointManager", "HFDatasetCheckpointManager"):
        assert cls in page
    assert "load_checkpoint returned None" in page  # the failures table carries Kura's own message
    loc = render_section(usability)
    for e in example_loc():
        assert f"examples/{e.path.name}</td><td>{e.code_lines}</td>" in loc.replace('<td class="head">', "<td>")
    from kura_perf.report.build import build_report
    from kura_perf.settings.paths import Paths

    result = build_report(Paths(kp_home))  # no stage runs: the page still carries the usability sections
    text = result.index_html.read_text()
    assert "Kura&#x27;s checkpoint formats" in text and "ParquetCheckpointManager" in text


def test_usability_results_are_typed_dagster_tables():
    """The assets' result tables are MetadataValue.table with a schema (not hand-built markdown): numbers
    stay numbers, a failed format's missing figures are empty cells."""
    from dagster import TableMetadataValue

    from kura_perf.defs.usability import CHECKPOINT_COLUMNS, _table

    rows = [{"format": "parquet", "scale": "100", "kind": "summaries", "status": "success", "write_s": 0.12345,
             "read_s": 0.01, "bytes": 2048, "write_peak_rss_mb": 80.0, "read_peak_rss_mb": 70.5},
            {"format": "hf_datasets", "scale": "100", "kind": "summaries", "status": "failed | bad\nthing",
             "write_s": float("nan"), "read_s": None, "bytes": None}]
    table = _table(rows, CHECKPOINT_COLUMNS)
    assert isinstance(table, TableMetadataValue)
    assert [c.name for c in table.schema.columns] == [name for name, _ in CHECKPOINT_COLUMNS]
    ok, failed = (record.data for record in table.records)
    assert ok["write_s"] == 0.1235 and ok["bytes"] == 2048 and ok["status"] == "success"
    assert failed["write_s"] is None and failed["read_s"] is None and failed["status"] == "failed | bad\nthing"
