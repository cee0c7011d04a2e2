"""The test matrix: scale x profile. The Dagster UI shows it as a grid."""

from dagster import MultiPartitionKey, MultiPartitionsDefinition, StaticPartitionsDefinition

from kura_perf.profiles import load_profiles
from kura_perf.scales import SCALES

scale_partitions = StaticPartitionsDefinition(list(SCALES))
profile_partitions = StaticPartitionsDefinition(list(load_profiles()))
benchmark_partitions = MultiPartitionsDefinition({"scale": scale_partitions, "profile": profile_partitions})


def partition_key(scale: str, profile: str) -> MultiPartitionKey:
    return MultiPartitionKey({"scale": scale, "profile": profile})
