"""The report's figures describe each profile as last configured: runs of an earlier version of the
same profile name (another profile_hash) are never averaged into its cells."""

from __future__ import annotations

import pandas as pd

from kura_perf.report.data import current_configuration


def test_only_the_latest_profile_hash_of_each_profile_is_kept():
    df = pd.DataFrame({
        "profile": ["offline", "offline", "offline", "kmeans"],
        "profile_hash": ["old", "old", "new", "k1"],
        "finished_at": pd.to_datetime(["2026-12-01 10:00", "2026-12-01 11:00", "2026-12-01 12:00",
                                       "2026-12-01 09:00"], utc=True),
        "n_clusters": [347, 340, 48, 100],
    })
    kept = current_configuration(df)
    assert sorted(kept["n_clusters"].tolist()) == [48, 100]


def test_a_profile_changed_back_keeps_the_runs_of_the_configuration_in_force():
    df = pd.DataFrame({
        "profile": ["offline"] * 3,
        "profile_hash": ["a", "b", "a"],
        "finished_at": pd.to_datetime(["2026-12-01 10:00", "2026-12-01 11:00", "2026-12-01 12:00"], utc=True),
        "n_clusters": [48, 347, 49],
    })
    assert current_configuration(df)["n_clusters"].tolist() == [48, 49]
