"""The test matrix: scale x profile. The Dagster UI shows it as a grid.

The profile dimension is the profiles of one RunSettings (`build_definitions(settings)` passes them
here), the same settings whose profiles file the resources read: the partitions and the profile an
asset runs can never come from two different sources."""

from typing import Iterable

from dagster import MultiPartitionKey, MultiPartitionsDefinition, StaticPartitionsDefinition

from kura_perf.scales import SCALES

scale_partitions = StaticPartitionsDefinition(list(SCALES))


def benchmark_partitions(profile_names: Iterable[str]) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition({"scale": scale_partitions,
                                      "profile": StaticPartitionsDefinition(list(profile_names))})


def profile_names(partitions: MultiPartitionsDefinition) -> list[str]:
    dimension = next(d for d in partitions.partitions_defs if d.name == "profile")
    return list(dimension.partitions_def.get_partition_keys())


def partition_key(scale: str, profile: str) -> MultiPartitionKey:
    return MultiPartitionKey({"scale": scale, "profile": profile})
