"""A real Dagster instance: `dagster dev` on 127.0.0.1 with a temporary DAGSTER_HOME, driven through
GraphQL as the UI drives it. Checks what the UI would show (assets, partitions, checks, schedule,
sensors), launches one partition run through the run queue and daemon, finds its records and check
evaluations, and stops the server without leaving a process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import psutil
import pytest

from kura_perf.cli.main import DAGSTER_YAML
from kura_perf.settings.paths import Paths
from kura_perf.stages.base import STAGES
from kura_perf.store import query

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).parent / "dagster"
PARTITION = "offline|100"  # a MultiPartitionKey's string: dimension values in dimension-name order
CHEAP = ["conversations", "summaries"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query_text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query_text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def wait_ready(self, server: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert server.poll() is None, f"dagster dev exited early:\n{log.read_text()[-3000:]}"
            try:
                self("{ version }")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        raise AssertionError(f"GraphQL not up after {timeout_s} s:\n{log.read_text()[-3000:]}")


def group_processes(pgid: int) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                alive.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def processes_using(home: Path) -> list[psutil.Process]:
    """Processes whose environment points at our DAGSTER_HOME: catches any that left the process group."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get("DAGSTER_HOME") == str(home):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def stop(server: subprocess.Popen, home: Path, grace_s: float = 30) -> None:
    """SIGTERM the whole group, wait, SIGKILL what is left; then no process of ours may survive."""
    pgid = server.pid  # start_new_session: the server leads its own group
    deadline = time.time() + grace_s  # one grace period for the server and its group together
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        server.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    while group_processes(pgid) and time.time() < deadline:
        time.sleep(0.2)
    leftovers = group_processes(pgid) + processes_using(home)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if server.poll() is None:
        server.kill()
        server.wait(timeout=10)
    psutil.wait_procs(leftovers, timeout=10)
    assert not group_processes(pgid), "processes of the dagster dev group survived SIGKILL"
    assert not processes_using(home), "processes using the test's DAGSTER_HOME survived"
    if leftovers:  # stopped all the same, but say so: a loaded machine can outlast the grace period
        warnings.warn(f"dagster dev needed SIGKILL for {sorted({p.pid for p in leftovers})} after {grace_s} s", stacklevel=2)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    home = Path(tempfile.mkdtemp(prefix=".tmp_dagster_home_", dir="/tmp"))
    (home / "dagster.yaml").write_text(DAGSTER_YAML)  # the CLI's instance config: one run at a time
    data = tmp_path_factory.mktemp("instance") / "data"
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "KURA_PERF_HOME": str(data), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop("KURA_PERF_NIGHTLY", None)
    log = home / "dagster-dev.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        gql = GraphQL(port)
        gql.wait_ready(server, log)
        yield gql, Paths(data), log
    finally:
        try:
            stop(server, home)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def repository(gql) -> dict:
    data = gql("""{ workspaceOrError { ... on Workspace { locationEntries { name
        locationOrLoadError { ... on RepositoryLocation { repositories { name } }
                              ... on PythonError { message } } } } } }""")
    entry = data["workspaceOrError"]["locationEntries"][0]
    location = entry["locationOrLoadError"]
    assert "repositories" in location, location
    return {"repositoryLocationName": entry["name"], "repositoryName": location["repositories"][0]["name"]}


ASSETS = """{ assetNodes { assetKey { path } isPartitioned
    partitionKeysByDimension { name partitionKeys }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def test_ui_shows_assets_partitions_and_checks(dagster_dev):
    gql, _, _ = dagster_dev
    nodes = {n["assetKey"]["path"][-1]: n for n in gql(ASSETS)["assetNodes"]}
    assert set(STAGES) <= set(nodes)
    for stage in STAGES:
        node = nodes[stage]
        assert node["isPartitioned"]
        dims = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
        assert dims["scale"] == ["100", "1k", "5k", "10k", "20k", "50k", "100k"] and "offline" in dims["profile"]
        checks = {c["name"]: c["blocking"] for c in node["assetChecksOrError"]["checks"]}
        expected = {"regression": False, "budgets": False, "sanity": True}
        if stage in ("clusters", "meta_clusters"):
            expected["quality"] = False
        assert checks == expected, stage


def test_schedule_and_sensors_are_running(dagster_dev):
    gql, _, _ = dagster_dev
    selector = repository(gql)
    schedules = gql("""query($s: RepositorySelector!) { schedulesOrError(repositorySelector: $s) {
        ... on Schedules { results { name cronSchedule executionTimezone pipelineName
                                     scheduleState { status } } } } }""", {"s": selector})
    found = {s["name"]: s for s in schedules["schedulesOrError"]["results"]}
    assert set(found) == {"nightly_benchmark", "nightly_kura_versions"}
    nightly, kura = found["nightly_benchmark"], found["nightly_kura_versions"]
    assert (nightly["cronSchedule"], nightly["executionTimezone"]) == ("0 2 * * *", "UTC")
    assert nightly["pipelineName"] == "benchmark_job" and nightly["scheduleState"]["status"] == "RUNNING"
    # The nightly for Kura (issue 21): runs when KURA_PERF_NIGHTLY_KURA names specs, else its ticks skip.
    assert (kura["cronSchedule"], kura["pipelineName"]) == ("0 3 * * *", "kura_versions_job")
    assert kura["scheduleState"]["status"] == "RUNNING"
    sensors = gql("""query($s: RepositorySelector!) { sensorsOrError(repositorySelector: $s) {
        ... on Sensors { results { name sensorType sensorState { status } } } } }""", {"s": selector})
    states = {s["name"]: s["sensorState"]["status"] for s in sensors["sensorsOrError"]["results"]}
    assert states == {"regression_alerts": "RUNNING", "reap_dead_runs": "RUNNING", "refresh_after_benchmark": "RUNNING"}


def sensor_ticks(gql, selector: dict, name: str) -> list[dict]:
    data = gql("""query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
        ... on Sensor { sensorState { ticks(limit: 20) { status timestamp skipReason } } } } }""",
               {"s": {**selector, "sensorName": name}})
    return data["sensorOrError"]["sensorState"]["ticks"]


def wait_for(condition, timeout_s: float, what: str, log: Path, every_s: float = 0.5):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if (value := condition()):
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}:\n{log.read_text()[-3000:]}")


LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""

ACTIVE_RUNS = """{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
    ... on Runs { results { runId status } } } }"""

RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"""

CHECK_EVENTS = """query($id: ID!) { logsForRun(runId: $id, limit: 1000) { ... on EventConnection { events {
    __typename ... on AssetCheckEvaluationEvent { evaluation { checkName partition success severity
    assetKey { path } } } } } } }"""


def test_launch_a_partition_run_and_find_its_records_and_checks(dagster_dev):
    gql, paths, log = dagster_dev
    selector = repository(gql)
    # The run-status sensor sets its cursor on its first tick; runs that finish before it are not seen.
    wait_for(lambda: sensor_ticks(gql, selector, "refresh_after_benchmark"), 90, "the sensor daemon's first tick", log)

    profile, scale = PARTITION.split("|")
    params = {
        "selector": {**selector, "jobName": "benchmark_job",
                     "assetSelection": [{"path": [s]} for s in CHEAP],
                     "assetCheckSelection": [{"assetKey": {"path": [s]}, "name": c}
                                             for s in CHEAP for c in ("regression", "budgets", "sanity")]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION},
                                       {"key": "dagster/partition/profile", "value": profile},
                                       {"key": "dagster/partition/scale", "value": scale}]},
    }
    launched = gql(LAUNCH, {"p": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = gql(RUN, {"id": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for(finished, 300, f"run {run_id}", log) == "SUCCESS", log.read_text()[-3000:]
    tags = {t["key"]: t["value"] for t in gql(RUN, {"id": run_id})["runOrError"]["tags"]}
    assert tags["dagster/partition"] == PARTITION

    records = query(paths.metrics, "SELECT stage, status, wall_s FROM stage_runs WHERE run_id = ?", [run_id])
    assert sorted(records["stage"]) == sorted(CHEAP) and (records["status"] == "success").all()
    stored = query(paths.metrics, "SELECT stage, check_name, passed FROM check_results WHERE run_id = ?", [run_id])
    assert {"regression_stage_work_s", "regression_peak_rss_mb", "budget_memory", "budget_storage", "sanity"} == \
        set(stored["check_name"]) and set(stored["stage"]) == set(CHEAP)

    events = gql(CHECK_EVENTS, {"id": run_id})["logsForRun"]["events"]
    evaluations = [e["evaluation"] for e in events if e["__typename"] == "AssetCheckEvaluationEvent"]
    assert {(e["assetKey"]["path"][-1], e["checkName"]) for e in evaluations} == \
        {(s, c) for s in CHEAP for c in ("regression", "budgets", "sanity")}
    assert all(e["partition"] == PARTITION for e in evaluations)
    assert all(e["success"] for e in evaluations if e["checkName"] in ("sanity", "regression"))

    # After the success, the run-status sensor refreshes the analysts' DuckDB views.
    wait_for(lambda: paths.database.exists(), 90, "the run-status sensor's views refresh", log)
    # ...and requests a run of the performance_report asset, which writes the page.
    wait_for(lambda: (paths.reports / "index.html").exists(), 180, "the report run requested by the sensor", log)
    # Let that run finish before the server is stopped, so shutdown does not race a run worker.
    wait_for(lambda: not gql(ACTIVE_RUNS)["runsOrError"]["results"], 120, "no run in progress", log)
