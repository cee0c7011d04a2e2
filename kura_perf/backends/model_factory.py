"""Build the models a profile names. Models are built once per backend (one client per model per
process, one SentenceTransformer load per process)."""

from __future__ import annotations

from kura_perf.backends.kura_models import check_profile, require_kura
from kura_perf.errors import ProfileError
from kura_perf.models import clustering
from kura_perf.models.cache import BuiltOnce, onnx_exports_dir
from kura_perf.models.checkpoint_summary import (
    CheckpointSummaryModel,
    check_checkpoint_file,
    checkpoint_path,
    resolve_checkpoint,
)
from kura_perf.models.offline_summary import OfflineSummaryModel
from kura_perf.models.onnx_embedding import OnnxEmbedding, OnnxEncoder, max_seq_length
from kura_perf.models.onnx_export import ExportCache
from kura_perf.models.projection import PCAProjection, UMAPProjection
from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding, default_model_path
from kura_perf.profiles import Profile
from kura_perf.settings.environment import SIMULATOR_URL_ENV
from kura_perf.settings.run import RunSettings


def api_settings(profile: Profile, settings: RunSettings):
    """Endpoint and key for API-backed models: the simulator serving the run (settings.simulator_url)
    for api.simulate profiles, else the profile's endpoint. The key is read from the environment
    variable the settings name, now, and never stored."""
    from kura_perf.models.openai_api import ApiSettings

    api = profile.api
    if api.simulate:
        base_url = settings.simulator_url
        if not base_url:
            raise ProfileError(f"profile '{profile.name}' uses the API simulator, but it is not running "
                               f"({SIMULATOR_URL_ENV} unset): run through Dagster or `kura-perf run`")
        key = settings.api_key(profile) or "sk-simulated"
    else:
        base_url = api.base_url or settings.base_url(profile)
        key = settings.api_key(profile)
        if not key:
            key_env, url_env = settings.api_key_env_for(profile), settings.base_url_env_for(profile)
            raise ProfileError(f"profile '{profile.name}' calls a real API endpoint but ${key_env} is not "
                               f"set; export it (and ${url_env} for a non-OpenAI endpoint), or use the "
                               f"'simulated-openai' profile to run offline")
    return ApiSettings(base_url=base_url, api_key=key, timeout_s=api.timeout_s, max_retries=api.max_retries,
                       concurrency=api.concurrency, adaptive=api.adaptive, max_concurrency=api.max_concurrency,
                       prices=api.prices or None, api_log=settings.api_log)


def preflight(profile: Profile, settings: RunSettings, kura_in_spec_env: bool = False) -> None:
    """Refuse, before any work starts, a profile that cannot run here (no key for a real endpoint,
    or the kura backend without the kura extra installed, or a summaries checkpoint that is not there).

    kura_in_spec_env: the stages will run in a Kura spec's own environment (`run --kura`, `versions`),
    which was built and import-checked on its own; whether Kura is installed HERE does not matter then
    (a Kura maintainer's checkout runs kura_perf without the kura extra)."""

    if checkpoint_path(profile.summary_model) is not None:
        check_checkpoint_file(resolve_checkpoint(profile.summary_model))
    if profile.backend == "kura":
        if not kura_in_spec_env:
            require_kura(profile)
        check_profile(profile)
    if profile.uses_api() and not profile.api.simulate:
        api_settings(profile, settings)


def _api_model_name(spec: str) -> str | None:
    return spec.split(":", 1)[1] if spec.startswith("openai:") else None


class ModelFactory(BuiltOnce):
    """settings: the run's (its model_cache keeps the ONNX exports, its simulator URL and credentials'
    names reach the API models), required; onnx_min_cosine overrides the export check's threshold
    (tests force an impossible one)."""

    def __init__(self, profile: Profile, settings: RunSettings, onnx_min_cosine: float | None = None):
        super().__init__()
        self.profile = profile
        self.settings = settings
        self.model_cache = self.settings.model_cache
        self.onnx_min_cosine = onnx_min_cosine

    def _torch_minilm(self):
        return self._once("embed:torch", lambda: SentenceTransformerEmbedding(batch_size=self._local_batch_size()))

    def _onnx_minilm(self, backend: str):
        if self.model_cache is None:
            raise ProfileError(f"profile '{self.profile.name}': embedding_backend '{backend}' needs a model cache "
                               f"folder (the data root's model_cache) to keep its export in")
        torch_model = self._torch_minilm()
        path = default_model_path()
        length = max_seq_length(path)
        cache = ExportCache(onnx_exports_dir(self.model_cache), path, length, reference=torch_model.bare_encode,
                            encoder_factory=lambda file: OnnxEncoder(file, path, length),
                            min_cosine=self.onnx_min_cosine)
        return OnnxEmbedding(backend, cache, batch_size=self._local_batch_size())

    def _local_batch_size(self) -> int:
        return self.profile.embedding_batch_size or self.profile.batch_size

    def summary_model(self):
        spec = self.profile.summary_model
        if spec == "offline":
            return self._once("summary", OfflineSummaryModel)
        if (name := _api_model_name(spec)) is not None:
            from kura_perf.models.openai_api import OpenAISummaryModel

            return self._once("summary", lambda: OpenAISummaryModel(name, api_settings(self.profile, self.settings)))
        if spec.startswith("checkpoint:"):
            return self._once("summary", lambda: CheckpointSummaryModel(spec))
        raise ProfileError(f"profile '{self.profile.name}': summary_model '{spec}': expected 'offline', "
                           f"'openai:<model>' or 'checkpoint:<path>'")

    def embedding_model(self):
        spec, dim = self.profile.embedding_model, self.profile.embedding_dimension
        if spec == "minilm":
            if dim not in (None, 384):
                raise ProfileError(f"profile '{self.profile.name}': embedding_dimension {dim}: minilm gives 384")
            backend = self.profile.embedding_backend
            if backend == "torch":
                return self._torch_minilm()
            return self._once("embed", lambda: self._onnx_minilm(backend))
        if (name := _api_model_name(spec)) is not None:
            from kura_perf.models.openai_api import OpenAIEmbedding

            kwargs = {"dimension": dim} if dim else {}
            return self._once("embed", lambda: OpenAIEmbedding(name, settings=api_settings(self.profile, self.settings),
                                                               batch_size=self.profile.batch_size, **kwargs))
        raise ProfileError(f"profile '{self.profile.name}': embedding_model '{spec}': expected 'minilm' or 'openai:<model>'")

    def namer(self):
        spec = self.profile.naming_model
        if spec == "offline":
            from kura_perf.models.naming import TfidfClusterNamer

            return self._once("namer", TfidfClusterNamer)
        if (name := _api_model_name(spec)) is not None:
            from kura_perf.models.openai_api import OpenAIClusterNamer

            return self._once("namer", lambda: OpenAIClusterNamer(name, api_settings(self.profile, self.settings)))
        raise ProfileError(f"profile '{self.profile.name}': naming_model '{spec}': expected 'offline' or 'openai:<model>'")

    def clustering_method(self, n_points: int):
        kind, params = self.profile.clustering, dict(self.profile.clustering_params)
        if kind == "umap-hdbscan":
            params.setdefault("random_state", self.profile.seed)
        try:
            return clustering.METHODS[kind](**params)
        except TypeError as exc:
            raise ProfileError(f"profile '{self.profile.name}': clustering_params for '{kind}': {exc}") from None

    def knn_metric(self) -> str:
        """The metric of the k-NN graph the clustering stores (umap-hdbscan's `metric`, cosine by default)."""
        return str(self.profile.clustering_params.get("metric", "cosine"))

    def projection_method(self):
        return UMAPProjection(random_state=self.profile.seed) if self.profile.projection == "umap" else PCAProjection()

    def close(self) -> None:
        for model in self._cache.values():
            close = getattr(model, "close", None)
            if close:
                close()
        self._cache.clear()
