"""The one Definitions object (`dagster dev -w workspace.yaml` loads it): built from this process's
settings (kura_perf/settings/__init__.py), read from the environment here, at the edge."""

from kura_perf.console import ignore_cluster_library_mismatch
from kura_perf.settings.run import RunSettings


def _definitions():
    # Before the definitions import dagster_celery (defs/cluster.py): kura_perf/console.py says why.
    ignore_cluster_library_mismatch()
    from kura_perf.defs.build import build_definitions

    return build_definitions(RunSettings.from_env())


defs = _definitions()
