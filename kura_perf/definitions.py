"""The one Definitions object (`dagster dev -w workspace.yaml` loads it)."""

from dagster import Definitions

from kura_perf.defs.assets import stage_assets
from kura_perf.defs.resources import KuraPerfResource

defs = Definitions(
    assets=stage_assets,
    resources={"kura_perf": KuraPerfResource()},
)
