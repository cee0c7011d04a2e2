"""RunSettings: one object built from the environment at the edge (the CLI and the Dagster resource the
same way) and passed down; the partitions come from it; nothing in the package writes the environment
except kura_perf/settings/third_party_env.py."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf.settings.paths import Paths
from kura_perf.settings import RunSettings

PACKAGE = Path(__file__).resolve().parent.parent / "kura_perf"
ALLOWED = {PACKAGE / "settings" / "third_party_env.py"}
WRITERS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    """os.environ, or a bare `environ` (from os import environ)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name)
                                                                            and node.id == "environ")


def environment_writes(source: str) -> list[int]:
    """Line numbers of os.environ[...] = / del, os.environ.setdefault/update/pop/..., os.putenv/unsetenv."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        if any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr in WRITERS and _is_environ(func.value):
                lines.append(node.lineno)
            if func.attr in ("putenv", "unsetenv") and isinstance(func.value, ast.Name) and func.value.id == "os":
                lines.append(node.lineno)
    return sorted(lines)


def test_the_scanner_finds_every_kind_of_write():
    source = "\n".join(["import os", "from os import environ", 'os.environ["A"] = "1"', 'os.environ.setdefault("A", "1")',
                        'os.environ.update(A="1")', 'os.putenv("A", "1")', 'os.environ.pop("A", None)',
                        'del os.environ["A"]', 'environ["A"] = "1"', 'x = os.environ.get("A")',
                        'env = dict(os.environ); env["A"] = "1"; env.pop("A")'])
    assert environment_writes(source) == [3, 4, 5, 6, 7, 8, 9]


def test_no_environment_writes_outside_third_party_env():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED:
            continue
        found += [f"{path.relative_to(PACKAGE.parent)}:{line}" for line in environment_writes(path.read_text())]
    assert found == [], "environment writes outside kura_perf/settings/third_party_env.py (add them there, with the " \
                        f"library and the reason in its table): {found}"


def test_from_env_reads_the_environment_and_overrides_win(monkeypatch, tmp_path):
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KURA_PERF_PROFILES", str(tmp_path / "p.toml"))
    monkeypatch.setenv("KURA_PERF_METER", "off")
    monkeypatch.setenv("KURA_PERF_SIMULATOR_URL", "http://127.0.0.1:1/v1")
    monkeypatch.delenv("KURA_PERF_MODEL_CACHE", raising=False)
    monkeypatch.delenv("KURA_PERF_RESULTS", raising=False)
    s = RunSettings.from_env()
    assert s.paths == Paths((tmp_path / "home").resolve())
    assert (s.profiles_file, s.meter, s.simulator_url) == (str(tmp_path / "p.toml"), False, "http://127.0.0.1:1/v1")
    assert s.model_cache == (tmp_path / "home").resolve() / "model_cache"
    o = RunSettings.from_env(home=tmp_path / "other", meter=True, simulator_url=None, profiles_file="x.toml",
                             model_cache=str(tmp_path / "mc"))
    assert o.paths.root == (tmp_path / "other").resolve() and o.meter is True and o.profiles_file == "x.toml"
    assert o.simulator_url == "http://127.0.0.1:1/v1"  # None means "not given": the environment's
    assert o.model_cache == tmp_path / "mc"
    with pytest.raises(TypeError, match="no field"):
        RunSettings.from_env(no_such_setting=1)


def test_the_resource_and_the_cli_build_the_same_settings(monkeypatch, tmp_path):
    from kura_perf.defs.resources import KuraPerfResource

    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    monkeypatch.setenv("KURA_PERF_METER", "off")
    assert KuraPerfResource().settings() == RunSettings.from_env()
    cli = RunSettings.from_env(profiles_file=str(tmp_path / "p.toml"), meter=True, api_key_env="MY_KEY",
                               backend_wrapper="kura_perf_tests.slow_stages:embeddings_twice")
    resource = KuraPerfResource.from_settings(cli)
    assert resource.settings() == cli  # what the CLI hands to its in-process run is what the assets see
    assert resource.paths() == cli.paths
    started = resource.settings(simulator_url="http://127.0.0.1:2/v1")
    assert started == cli.replace(simulator_url="http://127.0.0.1:2/v1")


def test_credentials_are_read_by_name_at_the_point_of_use(monkeypatch):
    from kura_perf.backends.model_factory import api_settings
    from kura_perf.errors import ProfileError
    from kura_perf.profiles import get_profile

    real, simulated = get_profile("openai-small"), get_profile("simulated-openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_KEY", "sk-mine")
    settings = RunSettings.from_env(api_key_env="MY_KEY")
    assert api_settings(real, settings).api_key == "sk-mine"
    assert "sk-mine" not in repr(settings)  # the settings hold the name, never the key
    with pytest.raises(ProfileError, match=r"\$OPENAI_API_KEY is not set"):
        api_settings(real, RunSettings.from_env())
    monkeypatch.delenv("KURA_PERF_SIMULATOR_URL", raising=False)
    with pytest.raises(ProfileError, match="simulator"):
        api_settings(simulated, RunSettings.from_env())
    served = api_settings(simulated, RunSettings.from_env(simulator_url="http://127.0.0.1:3/v1"))
    assert served.base_url == "http://127.0.0.1:3/v1" and os.environ.get("KURA_PERF_SIMULATOR_URL") is None


def test_get_backend_applies_the_settings_wrapper():
    from kura_perf.backends import Prepares, ReportsApiCounters, get_backend
    from kura_perf.profiles import get_profile
    from kura_perf_tests.slow_stages import SlowStage

    plain = get_backend(get_profile("offline"), RunSettings.from_env())
    wrapped = get_backend(get_profile("offline"),
                          RunSettings.from_env(backend_wrapper="kura_perf_tests.slow_stages:summaries_30_percent"))
    try:
        assert not isinstance(plain, SlowStage) and isinstance(wrapped, SlowStage)
        assert wrapped.name == "reference"  # the backend's own attributes and abilities show through
        assert isinstance(wrapped, Prepares) and isinstance(wrapped, ReportsApiCounters)
    finally:
        plain.close()
        wrapped.close()


def test_partitions_and_profiles_come_from_the_same_settings(tmp_path):
    import kura_perf.definitions  # noqa: F401 - the environment's definitions, imported first on purpose
    from kura_perf.defs.build import build_definitions

    profiles = tmp_path / "p.toml"
    profiles.write_text('[mine]\ndescription = "only in this file"\n')
    defs = build_definitions(RunSettings.from_env(paths=Paths(tmp_path / "data"), profiles_file=str(profiles)))
    keys = defs.resolve_job_def("benchmark_job").partitions_def.get_partition_keys()
    assert "mine|100" in keys and "offline|100" in keys
    assert defs.resources["kura_perf"].profiles_file == str(profiles)
    assert defs.resources["kura_perf"].profile("mine").description == "only in this file"
    nightly = defs.get_schedule_def("nightly_benchmark")
    assert nightly.name == "nightly_benchmark"


@pytest.mark.slow
def test_cli_options_reach_the_run_without_touching_the_environment(tmp_path, monkeypatch):
    """--profiles and --no-meter travel in the settings: the partition exists, the record is unmetered,
    and the CLI process's environment is what it was (no DAGSTER_HOME, no KURA_PERF_* written)."""
    from kura_perf.cli.main import main
    from kura_perf.store import query

    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    profiles = tmp_path / "p.toml"
    profiles.write_text('[cli-only]\ndescription = "a profile only the command line names"\n')
    before = dict(os.environ)
    code = main(["run", "--scale", "100", "--profile", "cli-only", "--stages", "conversations",
                 "--profiles", str(profiles), "--no-meter"])
    assert code == 0
    assert dict(os.environ) == before
    rows = query(tmp_path / "data" / "metrics", "SELECT profile, status, metered FROM stage_runs")
    assert rows.to_dict("records") == [{"profile": "cli-only", "status": "success", "metered": False}]
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").is_file()  # the CLI's own instance


PROBE = """
import os, socket, sys
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(name, None)
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:2])
    raise OSError("no network in this test")
socket.socket.connect = lambda self, address: refuse(address)
socket.getaddrinfo = refuse
from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding
vectors = SentenceTransformerEmbedding().embed(["hello world", "offline please"])
print(vectors.shape, attempts, [n for n in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if n in os.environ])
"""


@pytest.mark.slow
def test_minilm_loads_offline_without_the_offline_variables():
    """local_files_only on a local path: no connection attempt, and no HF_* variable set to get there."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(PACKAGE.parent)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "(2, 384) [] []"
