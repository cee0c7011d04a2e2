"""Kura's own model objects, built from a profile, plus the one adapter we hand to Kura.

Profile keys map onto Kura's constructors:
  summary_model "openai:<m>"   -> SummaryModel(model="openai/<m>", max_concurrent_requests=api.concurrency)
  naming_model "openai:<m>"    -> ClusterDescriptionModel (Kura 0.5.0: ClusterModel) and MetaClusterModel
                                  (same model and concurrency)
  embedding_model "minilm"     -> SentenceTransformerEmbeddingModel(<bundled MiniLM path>, model_batch_size=batch_size)
  embedding_model "openai:<m>" -> OpenAIEmbeddingModel(<m>, model_batch_size=batch_size) (native dimension only)
  clustering kmeans / hdbscan  -> KmeansClusteringMethod / HDBSCANClusteringMethod(**clustering_params)
  clustering minibatch-kmeans  -> MiniBatchKmeansClusteringMethod(**clustering_params) (Kura's large-data k-means)
                                  (Kura 0.5.0 has k-means only: the others are refused, naming the release)
  meta_max_clusters            -> MetaClusterModel(max_clusters=...), Kura's default KmeansClusteringModel(12)
  projection "umap"            -> HDBUMAP(embedding_model=<the embedding model>)
Kura's openai clients take their endpoint and key from OPENAI_BASE_URL / OPENAI_API_KEY, and keep the
SDK's own timeout and retries (api.timeout_s and api.max_retries do not reach them).
Every constructor goes through `construct`, which refuses a keyword the installed release does not name.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata

import numpy as np

from kura_perf.errors import ProfileError, StageError
from kura_perf.models import cache
from kura_perf.models.cache import BuiltOnce
from kura_perf.models.sentence_transformer import default_model_path
from kura_perf.profiles import Profile

INSTALL_HINT = "pip install 'kura_perf[kura]'"
KURA_CLUSTERING = ("kmeans", "hdbscan", "minibatch-kmeans")
# Kura's OpenAIEmbeddingModel sends no `dimensions`, so it always gets the model's native size.
NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}

KURA_CLUSTERING_CLASSES = {"kmeans": ("kura.k_means", "KmeansClusteringMethod"),
                           "minibatch-kmeans": ("kura.k_means", "MiniBatchKmeansClusteringMethod"),
                           "hdbscan": ("kura.hdbscan", "HDBSCANClusteringMethod")}

KURA_ST_KIND = "kura-sentence-transformer"  # the process cache's key: (this kind, (path, batch size))


def require_kura(profile: Profile) -> str:
    """Kura's version, or a ProfileError saying how to install it."""
    try:
        import kura  # noqa: F401 - imported only to learn whether Kura is installed
        import kura.types  # noqa: F401 - as above (a broken install fails here)
    except ImportError as exc:
        raise ProfileError(f"profile '{profile.name}' runs the real Kura package (backend = \"kura\"), which is not "
                           f"installed here ({exc}); install it with: {INSTALL_HINT}") from None
    try:
        return metadata.version("kura")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version() -> str:
    try:
        return f"kura {metadata.version('kura')}"
    except metadata.PackageNotFoundError:
        return "kura, version unknown"


def construct(cls, **kwargs):
    """cls(**kwargs), after checking that each kwarg is one of the constructor's named parameters.

    Why: the model constructors' keywords moved between Kura releases, and most take `**kwargs  # For
    future use`, which would swallow a setting the release does not know and run on its default: a
    measurement of something other than the profile says. So a keyword the installed Kura does not
    name is refused (ProfileError, one line), never dropped or passed blindly."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a C type): let the call say
        return cls(**kwargs)
    named = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(kwargs) - named)
    if unknown:
        raise ProfileError(f"the installed Kura ({_version()}): {cls.__name__} takes no {', '.join(unknown)} "
                           f"(it takes {', '.join(sorted(named)) or 'nothing'}); this profile needs it")
    return cls(**kwargs)


def _llm_name(profile: Profile, key: str) -> str:
    spec = getattr(profile, key)
    if not spec.startswith("openai:"):
        raise ProfileError(f"profile '{profile.name}': {key} '{spec}': the kura backend runs Kura's LLM models, "
                           f"so it needs 'openai:<model>' (Kura has no offline summariser)")
    return spec.split(":", 1)[1]


def check_profile(profile: Profile) -> None:
    """Refuse settings Kura cannot run, naming the key."""
    _llm_name(profile, "summary_model")
    _llm_name(profile, "naming_model")
    spec, dim = profile.embedding_model, profile.embedding_dimension
    if spec == "minilm":
        if dim not in (None, 384):
            raise ProfileError(f"profile '{profile.name}': embedding_dimension {dim}: minilm gives 384")
    elif spec.startswith("openai:"):
        native = NATIVE_DIMENSIONS.get(spec.split(":", 1)[1])
        if dim is not None and dim != native:
            raise ProfileError(f"profile '{profile.name}': embedding_dimension {dim}: Kura's OpenAIEmbeddingModel "
                               f"cannot ask for a dimension; leave it unset (native {native})")
    else:
        raise ProfileError(f"profile '{profile.name}': embedding_model '{spec}': expected 'minilm' or 'openai:<model>'")
    if profile.clustering not in KURA_CLUSTERING:
        raise ProfileError(f"profile '{profile.name}': clustering '{profile.clustering}': Kura offers "
                           f"{', '.join(KURA_CLUSTERING)}")
    if profile.projection != "umap":
        raise ProfileError(f"profile '{profile.name}': projection '{profile.projection}': Kura projects with "
                           f"HDBUMAP only; use 'umap'")


def _sentence_transformer(path: str, batch_size: int):
    """Kura's SentenceTransformerEmbeddingModel, loaded once per process (as the reference loads MiniLM),
    so each stage measures embedding, not model loading. It holds no client or loop state. `path` is
    a local folder: sentence-transformers loads it without contacting the Hub (no offline flag needed)."""
    from kura.embedding import SentenceTransformerEmbeddingModel

    def load():
        return construct(SentenceTransformerEmbeddingModel, model_name=path, model_batch_size=batch_size)

    return cache.shared(KURA_ST_KIND, (path, batch_size), load)


class KuraModels(BuiltOnce):
    """Each model built once per backend. Build after the OpenAI environment is set: Kura's clients
    read OPENAI_BASE_URL / OPENAI_API_KEY when they are created."""

    def __init__(self, profile: Profile):
        super().__init__()
        self.profile = profile

    @property
    def _concurrency(self) -> int:
        return self.profile.api.concurrency

    def summary_model(self):
        from kura.summarisation import SummaryModel

        name = _llm_name(self.profile, "summary_model")
        return self._once("summary", lambda: construct(SummaryModel, model=f"openai/{name}",
                                                                    max_concurrent_requests=self._concurrency))

    def description_model(self):
        """Kura 0.5.1+'s ClusterDescriptionModel (names the base clusters)."""
        from kura.cluster import ClusterDescriptionModel

        name = _llm_name(self.profile, "naming_model")
        return self._once("describe", lambda: construct(ClusterDescriptionModel, model=f"openai/{name}",
                                                        max_concurrent_requests=self._concurrency))

    def cluster_model(self, embedding_model, clustering_method):
        """Kura 0.5.0's ClusterModel: embedding, clustering and naming in one object (no
        ClusterDescriptionModel then). Not cached: the embeddings stage gives it Kura's embedding model,
        the clusters stage the stored vectors; its instructor client is collected on the loop after the call."""
        from kura.cluster import ClusterModel

        name = _llm_name(self.profile, "naming_model")
        return construct(ClusterModel, clustering_method=clustering_method, embedding_model=embedding_model,
                         model=f"openai/{name}", max_concurrent_requests=self._concurrency)

    def embedding_model(self):
        spec = self.profile.embedding_model
        if spec == "minilm":
            return self._once("embed", lambda: _sentence_transformer(default_model_path(), self.profile.batch_size))
        from kura.embedding import OpenAIEmbeddingModel

        name = spec.split(":", 1)[1]
        return self._once("embed", lambda: construct(OpenAIEmbeddingModel, model_name=name,
                                                          model_batch_size=self.profile.batch_size))

    def embedding_dimension(self) -> int:
        spec = self.profile.embedding_model
        return 384 if spec == "minilm" else NATIVE_DIMENSIONS.get(spec.split(":", 1)[1], 1536)

    def clustering_method(self):
        params = dict(self.profile.clustering_params)
        home, class_name = KURA_CLUSTERING_CLASSES[self.profile.clustering]
        try:
            method = getattr(importlib.import_module(home), class_name)
        except (ModuleNotFoundError, AttributeError):  # e.g. Kura 0.5.0: k-means only
            raise ProfileError(f"profile '{self.profile.name}': clustering '{self.profile.clustering}': the installed "
                               f"Kura ({_version()}) has no {home}.{class_name}") from None
        try:
            return method(**params)
        except TypeError as exc:
            raise ProfileError(f"profile '{self.profile.name}': clustering_params for Kura's {method.__name__}: "
                               f"{exc}") from None

    def meta_model(self):
        from kura.meta_cluster import MetaClusterModel

        name = _llm_name(self.profile, "naming_model")
        return self._once("meta", lambda: construct(
            MetaClusterModel, max_concurrent_requests=self._concurrency, model=f"openai/{name}",
            embedding_model=self.embedding_model(), max_clusters=self.profile.meta_max_clusters))

    def projection_model(self):
        from kura.dimensionality import HDBUMAP  # importing it builds an OpenAI client: needs OPENAI_API_KEY

        return self._once("project", lambda: construct(HDBUMAP, embedding_model=self.embedding_model()))

    def clients(self) -> list:
        """The openai clients the built models hold (unwrapping instructor's), to close on the loop."""
        found = []
        for model in self._cache.values():
            client = getattr(model, "client", None)
            client = getattr(client, "client", client)  # instructor's AsyncInstructor wraps the openai client
            if client is not None and hasattr(client, "close"):
                found.append(client)
        return found


def stored_embeddings(texts: list[str], vectors: np.ndarray):
    """A Kura embedding model that hands back the vectors the embeddings stage got from Kura's own
    model, for exactly the texts it embedded: so Kura's cluster step runs unmodified without
    embedding twice (the embedding cost is measured once, in the embeddings stage)."""
    from kura.base_classes import BaseEmbeddingModel

    class StoredEmbeddings(BaseEmbeddingModel):
        async def embed(self, asked: list[str]) -> list[list[float]]:
            if list(asked) != texts:
                raise StageError("clusters: Kura asked to embed texts other than the ones the embeddings stage "
                                 "embedded; the summaries changed since")
            return vectors.tolist()

        def slug(self) -> str:
            return "kura-perf:stored-embeddings"

    return StoredEmbeddings()
