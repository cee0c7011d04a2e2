import pytest

from kura_perf.errors import ProfileError
from kura_perf.profiles import get_profile, load_profiles


def test_builtin_profiles_validate():
    profiles = load_profiles()
    assert {"offline", "kmeans", "agglomerative"} <= set(profiles)
    assert profiles["offline"].clustering == "umap-hdbscan"
    assert profiles["hdbscan-raw"].clustering == "hdbscan"  # Kura's own raw-vector HDBSCAN, kept as a profile
    assert profiles["kmeans"].clustering == "kmeans"


def test_hash_ignores_description_but_not_settings(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[a]\ndescription = "one"\n[b]\ndescription = "two"\n[c]\nbatch_size = 7\n')
    p = load_profiles(f)
    assert p["a"].content_hash() == p["b"].content_hash() != p["c"].content_hash()


@pytest.mark.parametrize("body, expected", [
    ('[x]\nclusterng = "kmeans"\n', ["profile 'x'", "unknown key 'clusterng'", "clustering"]),
    ('[x]\nclustering = "dbscan"\n', ["profile 'x'", "key 'clustering'", "'hdbscan'", "'kmeans'", "dbscan"]),
    ('[x]\nbatch_size = "big"\n', ["profile 'x'", "key 'batch_size'", "integer", "big"]),
    ('[x]\napi = { concurency = 3 }\n', ["unknown key 'api.concurency'", "concurrency"]),
    ('[x]\nbatch_size = 0\n', ["key 'batch_size'", "greater than or equal to 1"]),
    ('x = 3\n', ["'x' must be a table"]),
    ('[x\n', ["not valid TOML"]),
])
def test_bad_profiles_name_the_key_and_what_is_allowed(tmp_path, body, expected):
    f = tmp_path / "mine.toml"
    f.write_text(body)
    with pytest.raises(ProfileError) as info:
        load_profiles(f)
    message = str(info.value)
    assert "mine.toml" in message
    for part in expected:
        assert part in message


def test_unknown_profile_lists_available():
    with pytest.raises(ProfileError, match="unknown profile 'nope'; available: offline"):
        get_profile("nope")


def test_missing_profiles_file(tmp_path):
    with pytest.raises(ProfileError, match="profiles file not found"):
        load_profiles(tmp_path / "absent.toml")
