"""kura_api finds Kura's procedural functions by looking, on small fake `kura` packages laid out as
0.5.0, 0.5.1/0.5.2 and 0.5.4 are (which module holds which function, and 0.5.0's model= clustering).
Each layout is imported in its own subprocess with the fake first on sys.path, so the installed Kura
is never what is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUMMARISE = "async def summarise_conversations(conversations, *, model, checkpoint_manager=None): pass\n"
EMBED = "async def embed_summaries(summaries, embedding_model): pass\n"
CLUSTER_NEW = ("async def generate_base_clusters_from_conversation_summaries(summaries, embedding_model=None, "
               "clustering_method=None, clustering_model=None, checkpoint_manager=None, **kwargs): pass\n")
CLUSTER_OLD = ("async def generate_base_clusters_from_conversation_summaries(summaries, *, model, "
               "checkpoint_manager=None): pass\n")
META = "async def reduce_clusters_from_base_clusters(clusters, *, model, checkpoint_manager=None): pass\n"
PROJECT = "async def reduce_dimensionality_from_clusters(clusters, *, model, checkpoint_manager=None): pass\n"

LAYOUTS = {
    "0.5.0": {"summarisation.py": "class SummaryModel: pass\n", "embedding.py": "class OpenAIEmbeddingModel: pass\n",
              "cluster.py": "class ClusterModel: pass\n", "meta_cluster.py": "class MetaClusterModel: pass\n",
              "dimensionality.py": "class HDBUMAP: pass\n", "v1/__init__.py": "",
              "v1/kura.py": SUMMARISE + CLUSTER_OLD + META + PROJECT,
              "__init__.py": "from .v1.kura import summarise_conversations\n"},
    "0.5.1": {"summarisation.py": SUMMARISE, "embedding.py": EMBED, "cluster.py": CLUSTER_NEW,
              "meta_cluster.py": "class MetaClusterModel: pass\n", "dimensionality.py": "class HDBUMAP: pass\n",
              "v1/__init__.py": "", "v1/kura.py": SUMMARISE + CLUSTER_NEW + META + PROJECT},
    "0.5.4": {"summarisation.py": SUMMARISE, "embedding.py": EMBED, "cluster.py": CLUSTER_NEW,
              "meta_cluster.py": META, "dimensionality.py": PROJECT},
}

PROBE = textwrap.dedent("""
    import json
    from kura_perf.backends.kura_api import HOMES, KuraApi
    api = KuraApi()
    print(json.dumps({"where": {name: api.where(name) for name in HOMES},
                      "takes_model": api.clusters_take_model(), "describe": api.describe()}))
""")


def _fake_kura(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / "kura" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (folder / "kura").joinpath("__init__.py").touch()
    return folder


def _probe(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)


def _found(folder: Path) -> dict:
    done = _probe(folder)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layout, expected, takes_model", [
    ("0.5.0", {"summarise_conversations": "kura.v1.kura", "embed_summaries": None,
               "generate_base_clusters_from_conversation_summaries": "kura.v1.kura",
               "reduce_clusters_from_base_clusters": "kura.v1.kura",
               "reduce_dimensionality_from_clusters": "kura.v1.kura"}, True),
    ("0.5.1", {"summarise_conversations": "kura.summarisation", "embed_summaries": "kura.embedding",
               "generate_base_clusters_from_conversation_summaries": "kura.cluster",
               "reduce_clusters_from_base_clusters": "kura.v1.kura",
               "reduce_dimensionality_from_clusters": "kura.v1.kura"}, False),
    ("0.5.4", {"summarise_conversations": "kura.summarisation", "embed_summaries": "kura.embedding",
               "generate_base_clusters_from_conversation_summaries": "kura.cluster",
               "reduce_clusters_from_base_clusters": "kura.meta_cluster",
               "reduce_dimensionality_from_clusters": "kura.dimensionality"}, False),
])
def test_each_function_is_found_where_that_layout_keeps_it(tmp_path, layout, expected, takes_model):
    found = _found(_fake_kura(tmp_path, LAYOUTS[layout]))
    assert found["where"] == expected
    assert found["takes_model"] is takes_model
    line = found["describe"]
    assert line.startswith("Kura layout: ") and "\n" not in line
    assert ("no embed_summaries" in line) is (expected["embed_summaries"] is None)
    assert ("model=ClusterModel" in line) is takes_model


def test_a_module_that_fails_to_import_is_an_error_not_a_missing_function(tmp_path):
    """Only 'Kura has no such module' means 'look elsewhere': a dependency missing inside Kura's module
    must surface, not send the lookup silently to an older home."""
    files = dict(LAYOUTS["0.5.4"])
    files["meta_cluster.py"] = "import no_such_dependency_for_kura_perf_test\n" + META
    done = _probe(_fake_kura(tmp_path, files))
    assert done.returncode != 0
    assert "no_such_dependency_for_kura_perf_test" in done.stderr


def test_constructors_get_only_keywords_the_release_names():
    """A model whose constructor swallows **kwargs (as Kura's do, 'for future use') must not silently
    run on its default when the release lacks a keyword the profile sets."""
    from kura_perf.backends.kura_models import construct
    from kura_perf.errors import ProfileError

    class Old:
        def __init__(self, model="m", max_concurrent_requests=50, **kwargs):
            self.model, self.kwargs = model, kwargs

    assert construct(Old, model="openai/x").model == "openai/x"
    with pytest.raises(ProfileError, match="Old takes no temperature"):
        construct(Old, model="openai/x", temperature=0.2)
