"""RunSettings: one object built from the environment at the edge (the CLI and the Dagster resource the
same way) and passed down; the partitions come from it; nothing in the package writes the environment
except kura_perf/settings/third_party_env.py, and nothing reads kura_perf's own variables from it except
kura_perf/settings/environment.py, called only at the edges."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf_tests.source_trees import parse

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
    for node in ast.walk(parse(source)):
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


# -- environment reads: kura_perf's own variables in kura_perf/settings/environment.py only ---------------

ENVIRONMENT_MODULE = PACKAGE / "settings" / "environment.py"
OWN_PREFIX = "KURA_PERF_"
# Reads of own variables outside environment.py that are not (yet) moved, as (module, variable): reason.
# Empty since the restructure (issue 18) landed; the test fails on an entry that no longer matches, so
# a temporary exception cannot go stale.
PENDING_READS: dict[tuple[str, str], str] = {}


_CONSTANTS: dict[Path, dict[str, str]] = {}  # each module parsed once (the package has no import cycles)


def _module_constants(path: Path, seen: frozenset = frozenset()) -> dict[str, str]:
    """Module-level NAME = "string" of a kura_perf file, and the names it imports from other kura_perf modules."""
    if path in seen or not path.is_file():
        return {}
    if path in _CONSTANTS:
        return _CONSTANTS[path]
    constants = {}
    for node in parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            constants.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kura_perf"):
            base = PACKAGE.parent.joinpath(*node.module.split("."))
            source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            imported = _module_constants(source, seen | {path})
            constants.update({(a.asname or a.name): imported[a.name] for a in node.names if a.name in imported})
    _CONSTANTS[path] = constants
    return constants


def _import_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> 'os.environ' / 'os.getenv' for `from os import environ, getenv [as ...]`."""
    return {(a.asname or a.name): f"os.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module == "os" for a in node.names if a.name in ("environ", "getenv")}


def environment_reads(source: str, constants: dict[str, str] | None = None) -> list[tuple[int, str | None]]:
    """(line, variable) of each read of one variable: os.environ.get(k) / [k] / `k in os.environ`,
    os.getenv(k), and `x = os.environ` (an alias, variable '*'). The variable is the key's value when it
    is a string or a module constant (`constants`), else None. Copies of the whole environment for a
    child process (dict(os.environ), {**os.environ}) read no setting and are not reported."""
    constants = constants or {}
    tree = parse(source)
    names = _import_names(tree)

    def is_environ(node):
        return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
                and node.value.id == "os") or (isinstance(node, ast.Name) and names.get(node.id) == "os.environ")

    def is_getenv(node):
        return (isinstance(node, ast.Attribute) and node.attr == "getenv" and isinstance(node.value, ast.Name)
                and node.value.id == "os") or (isinstance(node, ast.Name) and names.get(node.id) == "os.getenv")

    def key(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "get" and is_environ(func.value)) or is_getenv(func):
                reads.append((node.lineno, key(node.args[0])))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and is_environ(node.value):
            reads.append((node.lineno, key(node.slice)))
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators) \
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            reads.append((node.lineno, key(node.left)))
        elif isinstance(node, ast.Assign) and is_environ(node.value):
            reads.append((node.lineno, "*"))
    return sorted(reads)


def test_the_scanner_finds_every_kind_of_read():
    source = "\n".join(["import os", "from os import environ as env, getenv", 'NAME = "KURA_PERF_X"',
                        'a = os.environ.get("KURA_PERF_A")', "b = os.environ[NAME]", 'c = getenv("PATH")',
                        'd = "KURA_PERF_D" in env', "e = os.environ", "f = os.environ.get(key_name)",
                        "child = {**os.environ, 'A': '1'}", "copy = dict(os.environ)", 'os.environ["W"] = "1"'])
    assert environment_reads(source, {"NAME": "KURA_PERF_X"}) == [
        (4, "KURA_PERF_A"), (5, "KURA_PERF_X"), (6, "PATH"), (7, "KURA_PERF_D"), (8, "*"), (9, None)]


def test_own_variables_are_read_in_the_environment_module_only():
    """Every read of a KURA_PERF_* variable (or of the environment under a name the scan cannot resolve)
    is in kura_perf/settings/environment.py, which documents each one; third-party variables
    (DAGSTER_HOME, NUMBA_CACHE_DIR, PATH) are read where their library needs them."""
    from kura_perf.settings.environment import OWN_VARIABLES

    found, pending = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == ENVIRONMENT_MODULE:
            continue
        where = str(path.relative_to(PACKAGE.parent))
        for line, name in environment_reads(path.read_text(), _module_constants(path)):
            if (where, name) in PENDING_READS:
                pending.add((where, name))
            elif name is None and path in ALLOWED:
                continue  # third_party_env.py saves the third-party variables it sets, to put them back
            elif name is None or name == "*" or name.startswith(OWN_PREFIX) or name in OWN_VARIABLES:
                found.append(f"{where}:{line} reads {name or 'a variable named at run time'}")
    assert found == [], ("kura_perf's own settings are read from the environment in "
                         "kura_perf/settings/environment.py only (add the variable there, with its meaning and "
                         f"default, and pass the value down in RunSettings): {found}")
    assert pending == set(PENDING_READS), f"moved already, drop from PENDING_READS: {set(PENDING_READS) - pending}"


def test_the_environment_module_documents_every_variable_it_reads():
    from kura_perf.settings import environment

    names = {value for key, value in _module_constants(ENVIRONMENT_MODULE).items() if key.endswith("_ENV")}
    assert names == environment.OWN_VARIABLES  # every variable it names is in VARIABLES, and the reverse
    for variable in environment.VARIABLES:
        assert variable.meaning and variable.default and f"| {variable.name} " in environment.__doc__


# -- RunSettings.from_env (and Paths.from_env, the environment module's readers) at the edges only ------

# Where settings may be built from the environment, and why. Paths are relative to the repository;
# a folder ends in '/'. Every other module takes RunSettings (or Paths) as a required argument.
EDGES = {
    "kura_perf/cli/": "the command line: each command builds its settings once, from the environment and "
                      "its own options",
    "kura_perf/defs/resources.py": "the Dagster resource: builds the run's settings once per resource",
    "kura_perf/definitions.py": "the Dagster code location's entry (dagster -m kura_perf.definitions)",
    "kura_perf/simulator/__main__.py": "the API simulator's own process entry",
    "kura_perf/defs/launch.py": "run_partition, the Python entry for one partition (the CLI passes its "
                                "settings; a notebook or test may give only `paths`)",
    "kura_perf/defs/cluster_launch.py": "run_on_cluster's `paths` shorthand, and reconstruct_cluster_job: the "
                                        "Celery workers' entry, which builds a worker's settings in its process",
    "kura_perf/settings/": "the settings themselves (from_env is defined there)",
}
# Argparse command handlers (cmd_*) are CLI edges wherever they still live (cli/main.py's split moves
# them under cli/).
CLI_HANDLER_PREFIX = "cmd_"
# Calls below the edges not yet moved (empty since issue 18 landed); an entry that no longer matches fails.
PENDING_BUILDERS: dict[str, str] = {}
READERS = {"setting_values", "path_values", "read_credential"}


def settings_builders(source: str) -> list[tuple[int, str, str | None]]:
    """(line, call, outermost enclosing function) of RunSettings.from_env / Paths.from_env /
    ApiSettings.from_env and of the environment module's readers."""
    out = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if function is None and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            if isinstance(child, ast.Call):
                func = child.func
                if isinstance(func, ast.Attribute) and func.attr == "from_env" and isinstance(func.value, ast.Name):
                    out.append((child.lineno, f"{func.value.id}.from_env", function))
                elif isinstance(func, (ast.Name, ast.Attribute)) and getattr(func, "id", getattr(func, "attr", None)) \
                        in READERS:
                    out.append((child.lineno, getattr(func, "id", getattr(func, "attr", None)), function))
            visit(child, inner)

    visit(parse(source), None)
    return sorted(out)


def _is_edge(where: str) -> bool:
    return any(where == edge or (edge.endswith("/") and where.startswith(edge)) for edge in EDGES)


def test_the_builder_scanner_names_the_enclosing_handler():
    source = "\n".join(["def cmd_x(args):", "    return RunSettings.from_env()", "class A:",
                        "    def f(self):", "        return Paths.from_env().metrics", "s = path_values()",
                        "t = environment.read_credential('K')", "u = Other.from_env()"])
    assert settings_builders(source) == [(2, "RunSettings.from_env", "cmd_x"), (5, "Paths.from_env", "f"),
                                         (6, "path_values", None), (7, "read_credential", None),
                                         (8, "Other.from_env", None)]


def test_settings_are_built_from_the_environment_at_the_edges_only():
    """Below the edges a RunSettings (or Paths) is a required argument: a fallback to the environment
    deep down (`settings or RunSettings.from_env()`) would give a worker other settings than its caller's."""
    found, pending = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        if _is_edge(where):
            continue
        for line, call, function in settings_builders(path.read_text()):
            if (function or "").startswith(CLI_HANDLER_PREFIX):
                continue
            if where in PENDING_BUILDERS:
                pending.add(where)
                continue
            found.append(f"{where}:{line} {call}" + (f" in {function}" if function else ""))
    assert found == [], ("settings are built from the environment at the edges only (EDGES in this file); "
                         f"take a RunSettings (or Paths) argument instead: {found}")
    assert pending == set(PENDING_BUILDERS), f"gone already, drop from PENDING_BUILDERS: {set(PENDING_BUILDERS) - pending}"
    assert all(_is_edge(edge) or edge.endswith("/") for edge in EDGES)


def test_the_resource_builds_its_settings_once(monkeypatch, tmp_path):
    from kura_perf.defs.resources import KuraPerfResource

    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    monkeypatch.setenv("KURA_PERF_METER", "off")
    resource = KuraPerfResource()
    first = resource.settings()
    monkeypatch.setenv("KURA_PERF_METER", "on")  # read once: a later change is not seen by this resource
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "elsewhere"))
    assert resource.settings() is first and resource.paths() is first.paths and first.meter is False
    assert resource.settings(simulator_url="http://127.0.0.1:4/v1").simulator_url == "http://127.0.0.1:4/v1"
    assert resource.settings() is first  # an override is a copy, never kept


def test_kura_perf_db_and_model_cache_are_read_at_the_edge(monkeypatch, tmp_path):
    from kura_perf.defs.resources import KuraPerfResource

    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    monkeypatch.setenv("KURA_PERF_DB", str(tmp_path / "views.duckdb"))
    monkeypatch.setenv("KURA_PERF_MODEL_CACHE", str(tmp_path / "shared"))
    settings = RunSettings.from_env()
    assert settings.paths.database == tmp_path / "views.duckdb" and Paths.from_env() == settings.paths
    assert settings.model_cache == tmp_path / "shared"
    assert Paths(tmp_path).database == tmp_path / "metrics.duckdb"  # a Paths built directly reads nothing
    assert KuraPerfResource.from_settings(settings).settings() == settings


def test_nightly_and_alert_webhook_come_from_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("KURA_PERF_NIGHTLY", "offline:100")
    monkeypatch.setenv("KURA_PERF_ALERT_WEBHOOK", "http://127.0.0.1:5/hook/secret-token")
    settings = RunSettings.from_env(paths=Paths(tmp_path))
    assert settings.nightly == "offline:100" and settings.alert_webhook.endswith("secret-token")
    assert "secret-token" not in repr(settings)
    monkeypatch.delenv("KURA_PERF_ALERT_WEBHOOK")
    assert RunSettings.from_env(paths=Paths(tmp_path)).alert_webhook is None


def test_shard_staleness_and_cluster_executor_come_from_the_settings(tmp_path):
    """Both were read deep in the code (pipeline/shards.py on every wait, defs/cluster.py at import)."""
    env = {"KURA_PERF_SHARD_STALE_S": "8", "KURA_PERF_CLUSTER_EXECUTOR": "k8s"}
    s = RunSettings.from_env(paths=Paths(tmp_path), env=env)
    assert (s.shard_stale_s, s.cluster_executor) == (8.0, "k8s")
    d = RunSettings.from_env(paths=Paths(tmp_path), env={})
    assert (d.shard_stale_s, d.cluster_executor) == (30.0, "celery")
    for bad in ("soon", "0", "-3"):
        with pytest.raises(ValueError, match=f"KURA_PERF_SHARD_STALE_S='{bad}'"):
            RunSettings.from_env(paths=Paths(tmp_path), env={"KURA_PERF_SHARD_STALE_S": bad})
    pytest.importorskip("dagster_celery")
    from kura_perf.defs.cluster import build_cluster_jobs

    with pytest.raises(ValueError, match="KURA_PERF_CLUSTER_EXECUTOR .* 'nomad'"):
        build_cluster_jobs("nomad")
    assert {job.name for job in build_cluster_jobs("celery")} == {"cluster_embeddings", "cluster_pipeline"}


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
