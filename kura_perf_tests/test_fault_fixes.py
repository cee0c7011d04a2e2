"""Defects a fault probe found (issue 9: 3, 8-12): each test reproduces one first."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _option_strings(parser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


# -- 9: `kura-perf simulate-api` takes every option the simulator's own CLI has ---------------------
def test_simulate_api_subcommand_accepts_every_simulator_option():
    from kura_perf.cli.main import build_parser
    from kura_perf.simulator.args import build_parser as simulator_parser

    top = build_parser()
    sub = next(a for a in top._actions if a.dest == "command").choices["simulate-api"]
    assert _option_strings(simulator_parser()) <= _option_strings(sub)
    args = top.parse_args(["simulate-api", "--port", "8787", "--rpm", "5", "--outage", "1:2", "--fault-rate", "0.1"])
    assert (args.port, args.rpm, args.outage, args.fault_rate) == (8787, 5, [(1.0, 2.0)], 0.1)


def test_simulate_api_help_lists_the_settings():
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "simulate-api", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--rpm" in out.stdout and "--outage" in out.stdout and "unrecognized" not in out.stderr


# -- 10: profile and scale names cannot leave the data root ---------------------------------------------
@pytest.mark.parametrize("name", ["../../../escape", "..", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_unsafe_profile_names_are_refused(name):
    from kura_perf.errors import ProfileError
    from kura_perf.profiles import parse_profiles

    with pytest.raises(ProfileError, match="profile name .* is not allowed"):
        parse_profiles({name: {"description": "x"}}, "p.toml")


def test_partition_dir_stays_under_the_storage_root(tmp_path):
    from kura_perf.errors import KuraPerfError
    from kura_perf.settings.paths import Paths

    paths = Paths(tmp_path / "data")
    assert paths.partition_dir("offline", "1k") == tmp_path / "data" / "storage" / "offline" / "1k"
    for profile, scale in (("../../escape", "100"), ("offline", "../../x"), ("offline", "..")):
        with pytest.raises(KuraPerfError, match="not allowed"):
            paths.partition_dir(profile, scale)
    (tmp_path / "data" / "storage").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data" / "storage" / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KuraPerfError, match="outside"):
        paths.partition_dir("linked", "100")


def test_run_with_an_escaping_profile_name_writes_nothing_outside(tmp_path):
    profiles = tmp_path / "p.toml"
    profiles.write_text('["../../../escape"]\ndescription = "x"\n')
    home = tmp_path / "a" / "b" / "c" / "data"
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--profile", "../../../escape",
                          "--profiles", str(profiles), "--stages", "conversations"], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "KURA_PERF_HOME": str(home),
                                           "DAGSTER_HOME": str(tmp_path / "dh")})
    assert out.returncode == 2
    assert "profile name '../../../escape' is not allowed" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]


# -- 8: profile values are checked when the profile loads, before any stage runs -----------------------
@pytest.mark.parametrize("body, expected", [
    ('embedding_model = "minilmx"', ["key 'embedding_model'", "'minilmx'", "'minilm' or 'openai:<model>'"]),
    ('summary_model = "gpt-4o"', ["key 'summary_model'", "'gpt-4o'", "did you mean 'openai:gpt-4o'"]),
    ('naming_model = "openai:"', ["key 'naming_model'", "names no model after 'openai:'"]),
    ('embedding_dimension = 768', ["key 'embedding_dimension'", "768", "minilm", "384"]),
    ('embedding_model = "openai:text-embedding-3-small"\nembedding_dimension = 2000',
     ["key 'embedding_dimension'", "2000", "allowed: 1..1536"]),
    ('embedding_model = "openai:text-embedding-ada-002"\nembedding_dimension = 512', ["512", "1536-d vectors only"]),
    ('clustering = "hdbscan"\nclustering_params = { min_clustr_size = 5 }',
     ["key 'clustering_params'", "'min_clustr_size'", "allowed keys: min_cluster_size, min_samples"]),
    ('clustering = "kmeans"\nclustering_params = { min_cluster_size = 5 }',
     ["'min_cluster_size' not taken by clustering 'kmeans'", "clusters_per_group"]),
    ('clustering = "hdbscan"\nclustering_params = { min_cluster_size = 1 }', ["key 'clustering_params'",
                                                                             "at least 2 (got 1)"]),
    ('clustering = "agglomerative"\nclustering_params = { linkage = "wards" }', ["unknown linkage 'wards'"]),
    ('backend = "kura"\nsummary_model = "openai:m"\nnaming_model = "openai:m"\nclustering = "kmeans"\n'
     'clustering_params = { n_clusters = 5 }', ["'n_clusters' not taken by Kura's kmeans", "clusters_per_group"]),
])
def test_bad_profile_values_are_refused_at_load(tmp_path, body, expected):
    from kura_perf.errors import ProfileError
    from kura_perf.profiles import load_profiles

    f = tmp_path / "mine.toml"
    f.write_text(f"[mine]\n{body}\n")
    with pytest.raises(ProfileError) as info:
        load_profiles(f)
    message = str(info.value)
    assert message.startswith(f"{f}: profile 'mine': ")
    for part in expected:
        assert part in message


def test_good_profile_values_load(tmp_path):
    from kura_perf.profiles import load_profiles

    f = tmp_path / "mine.toml"
    f.write_text('[a]\nembedding_model = "openai:text-embedding-3-small"\nembedding_dimension = 256\n'
                 '[b]\nembedding_model = "openai:bge-m3"\nembedding_dimension = 1024\n'  # a compatible endpoint's
                 '[c]\nclustering = "kmeans"\nclustering_params = { n_clusters = 7 }\n')
    profiles = load_profiles(f)
    assert profiles["a"].embedding_dimension == 256 and profiles["c"].clustering_params == {"n_clusters": 7}


def test_run_refuses_a_bad_value_before_any_stage(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[mine]\nembedding_model = "minilmx"\n')
    env = {**__import__("os").environ, "KURA_PERF_HOME": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dh")}
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--profile", "mine", "--profiles", str(f)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and "key 'embedding_model': 'minilmx' is not allowed" in out.stderr
    assert not (tmp_path / "data" / "metrics").exists()  # no stage ran, nothing recorded


# -- 12: small ones ----------------------------------------------------------------------------------------
def test_json_error_messages_say_at_once(tmp_path):
    from kura_perf.corpus.loaders import load_conversations
    from kura_perf.errors import InputDataError

    f = tmp_path / "c.jsonl"
    f.write_text('{"chat_id": "bad\x01"}\n')
    with pytest.raises(InputDataError) as info:
        load_conversations(f)
    assert "Invalid control character at column 17" in str(info.value) and "at at" not in str(info.value)


def test_short_file_hint_names_the_profile_key(tmp_path):
    from kura_perf.corpus.loaders import NotEnoughConversations, load_conversations

    f = tmp_path / "c.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    with pytest.raises(NotEnoughConversations) as info:
        load_conversations(f, limit=5)
    assert "allow_short_data = true in the profile" in str(info.value)


def test_cli_shows_lenient_skips_with_their_reasons(capsys):
    import json

    from kura_perf.cli.printing import print_records

    problem = "c.jsonl, line 5: expected one JSON object per line (got invalid JSON: Expecting value at column 1)"
    records = [{"stage": "conversations", "status": "success", "items_in": 102, "items_out": 100,
                "skipped_records": 2, "cpu_user_s": 0.1, "cpu_sys_s": 0.0, "extra": json.dumps({"problems": [problem]})},
               {"stage": "summaries", "status": "success", "items_in": 100, "items_out": 100, "skipped_records": 0,
                "cpu_user_s": 0.1, "cpu_sys_s": 0.0, "extra": "{}"}]
    print_records(records)
    out = capsys.readouterr().out
    assert "skipped_records" in out.splitlines()[0]
    assert "conversations: skipped 2 invalid input record(s) (lenient profile)" in out
    assert f"  - {problem}" in out and "summaries: skipped" not in out


# -- 3: `report --out DIR` touches only the files the report wrote -------------------------------------------
def test_report_out_keeps_the_users_files_and_the_folders_mode(tmp_path):
    import os

    from kura_perf.report.build import MANIFEST, build_report
    from kura_perf.settings.paths import Paths

    out = tmp_path / "mine"
    out.mkdir()
    os.chmod(out, 0o755)
    (out / "notes.html").write_text("my notes")
    (out / "photo.png").write_bytes(b"\x89PNG mine")
    build_report(Paths(tmp_path / "data"), out)
    (out / "stale.png").write_bytes(b"old figure")  # as if an earlier report had written it
    manifest = out / MANIFEST
    manifest.write_text('{"files": ["index.html", "stale.png"]}')
    build_report(Paths(tmp_path / "data"), out)  # a rebuild
    assert (out / "notes.html").read_text() == "my notes" and (out / "photo.png").read_bytes() == b"\x89PNG mine"
    assert not (out / "stale.png").exists()  # the report's own old figure is removed
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "index.html", "notes.html", "photo.png"])


def test_report_out_new_folder_gets_the_usual_mode_and_never_overwrites_a_foreign_index(tmp_path):
    import os

    from kura_perf.errors import KuraPerfError
    from kura_perf.report.build import build_report
    from kura_perf.settings.paths import Paths

    umask = os.umask(0o022)
    try:
        build_report(Paths(tmp_path / "data"), tmp_path / "new")
    finally:
        os.umask(umask)
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == "0o755"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("their own page")
    with pytest.raises(KuraPerfError, match="refusing to overwrite index.html"):
        build_report(Paths(tmp_path / "data"), theirs)
    assert (theirs / "index.html").read_text() == "their own page"
    assert [p.name for p in theirs.iterdir()] == ["index.html"]  # no staging or manifest left behind


# -- 11: damaged stage files are refused with the file's name and what is wrong -------------------------------
@pytest.fixture
def stored(tmp_path):
    import numpy as np
    import pandas as pd

    from kura_perf.files.outputs import StageData, write_stage

    folder = tmp_path / "storage" / "offline" / "100"
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    write_stage(folder, "embeddings", StageData(arrays={"main": vectors}))
    write_stage(folder, "summaries", StageData(tables={"main": pd.DataFrame({"chat_id": [f"c{i}" for i in range(50)]})}))
    return folder, vectors


def _refused(folder, stage, *expected):
    from kura_perf.errors import StageError
    from kura_perf.files.outputs import read_stage

    with pytest.raises(StageError) as info:
        read_stage(folder, stage)
    for part in expected:
        assert part in str(info.value)


def test_intact_stage_files_read_back(stored):
    import numpy as np

    from kura_perf.files.outputs import read_stage

    folder, vectors = stored
    assert np.array_equal(read_stage(folder, "embeddings").arrays["main"], vectors)
    assert len(read_stage(folder, "summaries").tables["main"]) == 50


def test_same_size_garbage_in_embeddings_is_refused(stored):
    import numpy as np

    folder, vectors = stored
    path = folder / "embeddings.npy"
    with open(path, "wb") as f:  # a valid header and the same size: only the values are garbage
        np.save(f, vectors[::-1].copy())
    _refused(folder, "embeddings", str(path), "checksum mismatch", "re-run stage 'embeddings'")
    size = path.stat().st_size
    path.write_bytes(b"\x00" * size)
    _refused(folder, "embeddings", str(path), "not a readable .npy array")


def test_truncated_and_missing_files_are_named(stored):
    folder, _ = stored
    (folder / "embeddings.npy").write_bytes(b"")
    _refused(folder, "embeddings", str(folder / "embeddings.npy"), "0 bytes, the manifest of stage 'embeddings' says")
    (folder / "summaries.parquet").unlink()
    _refused(folder, "summaries", str(folder / "summaries.parquet"), "missing, though the manifest")


def test_garbage_parquet_and_manifests_are_named(stored):
    folder, _ = stored
    table = folder / "summaries.parquet"
    table.write_bytes(b"x" * table.stat().st_size)
    _refused(folder, "summaries", str(table), "checksum mismatch")
    manifest = folder / "embeddings.manifest.json"
    manifest.write_text('{"stage": "embeddings", "arrays": ["main"], "files": {}}')
    _refused(folder, "embeddings", str(manifest), "key 'tables' must be a list (got missing)")
    manifest.write_text("{not json")
    _refused(folder, "embeddings", str(manifest), "unreadable stage manifest")


def test_a_nan_in_a_manifestless_legacy_array_is_refused(stored):
    import json

    import numpy as np

    folder, vectors = stored
    bad = vectors.copy()
    bad[3, 2] = np.nan
    with open(folder / "embeddings.npy", "wb") as f:
        np.save(f, bad)
    manifest = folder / "embeddings.manifest.json"
    body = json.loads(manifest.read_text())
    body.pop("contents")  # as written before manifests held checksums
    manifest.write_text(json.dumps(body))
    _refused(folder, "embeddings", "1 value(s) are NaN or infinite")


def test_cli_shows_compile_start_up_and_set_up_beside_wall_time_only_when_paid(capsys):
    """A clusters run on a cold numba cache: its 21 s of wall is 19.5 s compile + 0.5 s start-up + 1 s work;
    the table says so. A run that paid none of them gets no such columns."""
    from kura_perf.cli.printing import print_records

    cold = [{"stage": "embeddings", "status": "success", "wall_s": 3.0, "stage_work_s": 3.0, "jit_compile_s": 0.0,
             "startup_s": 0.0, "setup_s": 1.25, "cpu_user_s": 1.0, "cpu_sys_s": 0.0},
            {"stage": "clusters", "status": "success", "wall_s": 21.0, "stage_work_s": 1.0, "jit_compile_s": 19.5,
             "startup_s": 0.5, "setup_s": 0.0, "cpu_user_s": 1.0, "cpu_sys_s": 0.0}]
    print_records(cold)
    header, _, clusters = capsys.readouterr().out.splitlines()[:3]
    for column in ("wall_s", "jit_compile_s", "startup_s", "stage_work_s", "setup_s"):
        assert column in header
    assert clusters.split()[:6] == ["clusters", "success", "21.000", "19.500", "0.500", "1.000"]
    warm = [{**row, "wall_s": row["stage_work_s"], "jit_compile_s": 0.0, "startup_s": 0.0, "setup_s": None}
            for row in cold]
    print_records(warm)
    header = capsys.readouterr().out.splitlines()[0]
    assert "wall_s" in header and not any(c in header for c in ("jit_compile_s", "startup_s", "stage_work_s",
                                                                 "setup_s"))


def test_cli_shows_peak_memory_in_decimal_mb(capsys):
    """The store keeps the meter's MiB (peak_rss_mb); the run's table shows decimal MB like the report:
    1,000 MiB is 1,048.576 MB."""
    from kura_perf.cli.printing import print_records

    print_records([{"stage": "embeddings", "status": "success", "wall_s": 1.0, "peak_rss_mb": 1000.0,
                    "cpu_user_s": 1.0, "cpu_sys_s": 0.0}])
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert "peak_mb" in header and "peak_rss_mb" not in header
    assert "1048.576" in row.split()
