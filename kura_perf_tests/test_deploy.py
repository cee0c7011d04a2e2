"""deploy/: the instance config, the executor config, the compose file and the Helm values parse
and are accepted by what reads them (Dagster's instance schema, dagster-celery's executor schema;
for the Helm chart, the keys its values.schema.json declares)."""

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"

# From dagster-io/dagster helm/dagster/values.schema.json (commit bdb8547f) and the pydantic models
# it is generated from (helm/dagster/schema/schema/charts/...): the keys we use must be among these.
CHART_TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig",
}
K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}
USER_DEPLOYMENTS = {"enabled", "enableSubchart", "imagePullSecrets", "deployments"}
USER_DEPLOYMENT = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "port", "env",
    "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName",
}
POSTGRESQL = {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
              "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"}
RUN_LAUNCHER_TYPES = {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"}


def test_helm_values_use_only_keys_the_chart_accepts():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert set(values) <= CHART_TOP_LEVEL
    launcher = values["runLauncher"]
    assert launcher["type"] in RUN_LAUNCHER_TYPES and set(launcher) == {"type", "config"}
    assert set(launcher["config"]["k8sRunLauncher"]) <= K8S_RUN_LAUNCHER
    assert all("=" in v or v.isidentifier() for v in launcher["config"]["k8sRunLauncher"]["envVars"])
    users = values["dagster-user-deployments"]
    assert set(users) <= USER_DEPLOYMENTS
    for deployment in users["deployments"]:
        assert set(deployment) <= USER_DEPLOYMENT
        assert {"name", "image", "port"} <= set(deployment)
        assert deployment["env"]["KURA_PERF_CLUSTER_EXECUTOR"] == "k8s"
    assert set(values["postgresql"]) <= POSTGRESQL
    assert isinstance(values["postgresql"]["service"]["port"], int)


def test_instance_config_is_accepted_by_dagster(monkeypatch):
    pytest.importorskip("dagster_postgres")
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    for name in ("KURA_PERF_PG_USER", "KURA_PERF_PG_PASSWORD", "KURA_PERF_PG_HOST", "KURA_PERF_PG_DB"):
        monkeypatch.setenv(name, "x")
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_executor_config_is_accepted_by_dagster_celery(monkeypatch):
    pytest.importorskip("dagster_celery")
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("KURA_PERF_BROKER_URL", "redis://head:6379/0")
    monkeypatch.setenv("KURA_PERF_BACKEND_URL", "redis://head:6379/1")
    config = get_validated_config(str(DEPLOY / "celery.yaml"))
    assert config["broker"] == "redis://head:6379/0"
    assert config["config_source"]["task_acks_late"] is True


def test_local_cluster_writes_the_same_executor_settings():
    from kura_perf.services.settings import ClusterSettings

    shipped = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]["config_source"]
    local = ClusterSettings().executor_config()["config_source"]
    assert shipped == local


def test_compose_file_runs_dagsters_worker_command():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "webserver", "daemon", "worker"} <= set(services)
    assert services["worker"]["command"][:3] == ["dagster-celery", "worker", "start"]
    assert "worker" in services["worker"]["profiles"] and "head" in services["postgres"]["profiles"]


def test_cluster_jobs_run_the_same_stage_assets_on_the_celery_executor():
    """One pipeline definition: the cluster jobs select the stage assets themselves (no ops of their own),
    the embeddings asset's fan-out (plan, shard, merge) included, on the Celery executor, without checks."""
    pytest.importorskip("dagster_celery")
    from kura_perf.definitions import defs
    from kura_perf.stages.base import STAGES

    jobs = {job.name: job for job in defs.get_repository_def().get_all_jobs()}
    assert {"cluster_embeddings", "cluster_pipeline"} <= set(jobs)
    for name, stages in (("cluster_pipeline", STAGES), ("cluster_embeddings", STAGES[:3])):
        job = jobs[name]
        assert job.executor_def.name == "celery" and job.tags.get("kura_perf/cluster") == "true"
        assert {key.path[-1] for key in job.asset_layer.executable_asset_keys} == set(stages)
        assert {node.name for node in job.nodes} == set(stages)  # one node per stage asset, no check nodes
    embeddings = jobs["cluster_pipeline"].graph.node_named("embeddings").definition
    assert {node.name for node in embeddings.nodes} == {"embeddings_plan", "embeddings_shard", "embeddings_merge"}
