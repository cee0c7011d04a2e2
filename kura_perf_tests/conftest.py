"""Shared fixtures, and how the suite runs in parallel (`make test`: pytest-xdist, `--dist loadgroup`).

Parallel runs: each xdist worker is its own process with its own module state; every test keeps its
files under its own tmp_path (data root, DAGSTER_HOME, tmpfs mounts) and takes free ports. What must
stay in one process is grouped (`xdist_group`): a module whose tests share a module-scoped fixture
(a server, a run) is one group automatically (below), and the session-scoped pca|100 run is one group
("pca_100") across the three files that read it. Groups that hold a `slow` test are handed out first,
so the end of the run is made of short tests.
"""

import os
import tempfile
from dataclasses import dataclass

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One numba cache for every test process on this machine (each test has its own data root, where the
# product would put it): UMAP then compiles once per machine here too. A test of the data-root
# placement clears this first. numba writes its cache files atomically, so xdist workers share it.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "kura_perf_tests_numba"))
# A user's own Dagster instance is never the tests' (and two workers must not share one: two processes
# creating a fresh SQLite DAGSTER_HOME race in its migrations). Tests that need one make their own.
os.environ.pop("DAGSTER_HOME", None)


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache(tmp_path_factory):
    """One ONNX export for the whole session (and its subprocesses), not one per test data root. Under
    xdist the workers share it too (an export is built under an flock and renamed into place)."""
    from kura_perf.settings.environment import MODEL_CACHE_ENV

    if os.environ.get(MODEL_CACHE_ENV):
        yield os.environ[MODEL_CACHE_ENV]
        return
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # <basetemp>/popen-gwN: its parent is common to all workers
        base = base.parent
    folder = base / "shared" / "data" / "model_cache"  # as if under a data root
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MODEL_CACHE_ENV] = str(folder)
    try:
        yield str(folder)
    finally:
        os.environ.pop(MODEL_CACHE_ENV, None)


@pytest.fixture
def kp_home(tmp_path, monkeypatch):
    """A private data root, so tests never touch ./data."""
    home = tmp_path / "data"
    monkeypatch.setenv("KURA_PERF_HOME", str(home))
    return home


# -- one six-stage pca|100 run for the session --------------------------------------------------------

@dataclass
class PartitionRun:
    paths: object  # kura_perf.settings.paths.Paths: the run's own data root
    outcome: object  # kura_perf.defs.launch.RunOutcome
    instance: object  # the ephemeral DagsterInstance the run is logged in (open for the session)
    materializations: dict  # stage -> its latest materialization event


@pytest.fixture(scope="session")
def pca_100(tmp_path_factory):
    """All six stages of the pca|100 partition through Dagster (pca: UMAP's JIT would add ~40 s and
    nothing to what is checked), once per session: test_defs_pipeline, test_defs_checks and
    test_kura_backend read it (their modules are in xdist group "pca_100", so one worker runs it).
    Users may add runs to its instance and rows to its store, never change or remove any; a test that
    needs more beside it copies the data root (test_kura_backend)."""
    from dagster import AssetKey, DagsterInstance

    from kura_perf.defs.launch import run_partition
    from kura_perf.settings.paths import Paths
    from kura_perf.stages.base import STAGES

    paths = Paths(tmp_path_factory.mktemp("pca_100") / "data")
    with DagsterInstance.ephemeral() as instance:
        outcome = run_partition("100", "pca", paths=paths, instance=instance)
        materializations = {stage: instance.get_latest_materialization_event(AssetKey(stage)) for stage in STAGES}
        yield PartitionRun(paths, outcome, instance, materializations)


# -- scheduling under xdist ---------------------------------------------------------------------------
# `--dist loadgroup` (pyproject) is implemented here: pytest-xdist 3.8 groups by suffixing node ids,
# which pytest 9 no longer allows (Node.nodeid is read-only), so its own loadgroup silently runs a
# group's tests on several workers. Instead each worker writes the scope of every test (its group, or
# the test itself) to a folder the controller made, and the controller's scheduler reads it.

SCOPES_ENV = "KURA_PERF_TESTS_XDIST_SCOPES"
_SCOPE = pytest.StashKey[str]()


def _uses_module_scoped_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in ("module", "class", "package")
               for defs in info.name2fixturedefs.values())


def pytest_configure(config):
    if (not hasattr(config, "workerinput") and config.getoption("dist", None) == "loadgroup"
            and config.getoption("numprocesses", None)):  # the xdist controller: before the workers start
        os.environ[SCOPES_ENV] = tempfile.mkdtemp(prefix="kura-perf-tests-scopes-")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get(SCOPES_ENV):
        import shutil

        shutil.rmtree(os.environ.pop(SCOPES_ENV), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # only in an xdist worker: a plain run keeps its order
        return
    scope_of = {}
    for item in items:
        groups = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                  for m in item.iter_markers("xdist_group")}
        if not groups and _uses_module_scoped_fixture(item):
            # A module-scoped fixture (a server, a partition run) is set up once per process: keep the
            # module's tests on one worker, or each worker would set it up again.
            groups = {item.nodeid.split("::")[0]}
        scope_of[item] = "_".join(sorted(groups)) if groups else item.nodeid
        item.stash[_SCOPE] = scope_of[item]
    slow_scopes = {scope_of[i] for i in items if i.get_closest_marker("slow")}
    first_seen = {}
    for index, item in enumerate(items):
        first_seen.setdefault(scope_of[item], index)
    # Slow groups and tests first (in their collection order), then the rest: the long ones start
    # early and the run ends on short tests. Stable: each group keeps its tests' order.
    items.sort(key=lambda i: (scope_of[i] not in slow_scopes, first_seen[scope_of[i]]))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook tells the controller the collection is done
def pytest_collection_finish(session):
    folder = os.environ.get(SCOPES_ENV)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not folder or not worker:
        return
    import json

    scopes = {item.nodeid: item.stash.get(_SCOPE, item.nodeid) for item in session.items}
    part = os.path.join(folder, f".{worker}.json.tmp")
    with open(part, "w") as out:
        json.dump(scopes, out)
    os.replace(part, os.path.join(folder, f"{worker}.json"))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup" or not os.environ.get(SCOPES_ENV):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's loadscope, with each test's scope as the workers computed it (above)."""

        _scopes: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._scopes is None:
                import glob
                import json

                files = glob.glob(os.path.join(os.environ[SCOPES_ENV], "*.json"))
                assert files, "no xdist worker wrote its test scopes (kura_perf_tests/conftest.py)"
                scopes: dict = {}
                for name in files:
                    with open(name) as f:
                        scopes.update(json.load(f))
                self._scopes = scopes
            return self._scopes.get(nodeid, nodeid)

        def _reschedule(self, node) -> None:
            """As xdist's, but a node gets its next unit only when it is down to its last pending test
            (xdist waits until 2): a worker busy with a long test then does not hold two more units
            while the other runs dry at the end of the run."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) > 1:
                return
            self._assign_work_unit(node)

    return GroupScheduling(config, log)
