"""The one Definitions object (`dagster dev -w workspace.yaml` loads it): built from this process's
settings (kura_perf/settings/__init__.py), read from the environment here, at the edge."""

from kura_perf.defs.build import build_definitions
from kura_perf.settings.run import RunSettings

defs = build_definitions(RunSettings.from_env())
