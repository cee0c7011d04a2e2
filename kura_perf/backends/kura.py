"""The kura backend: each stage runs the installed Kura package's own procedural API, unmodified,
and stores what the reference backend stores, so the same checks, quality metrics and storage
figures apply. Where each function lives differs by release (0.5.0 ... 0.5.4): kura_api.py finds it,
and the stage record's extra says where (kura_layout).

Stage mapping (Kura's embedding happens inside its base-clustering call; we split it out):
  conversations  the reference's loader/generator (Kura has no data stage)
  summaries      summarise_conversations(SummaryModel)
  embeddings     embed_summaries(summaries, <Kura embedding model>): exactly the call Kura's cluster
                 step makes, over str(ConversationSummary). Kura 0.5.0 has no embed_summaries: its
                 ClusterModel._embed_summaries (what its cluster_summaries calls first: str(summary),
                 ClusterModel's embedding model with its batch size) is called instead, on a ClusterModel
                 built as the clusters stage builds it.
  clusters       generate_base_clusters_from_conversation_summaries with Kura's clustering method and
                 ClusterDescriptionModel (0.5.0: one ClusterModel holding both); its embedding model
                 hands back the stored vectors of the embeddings stage (same texts, checked), so Kura's
                 function runs whole while embedding is timed once. Stage times are therefore comparable
                 with the reference's stage by stage; Kura's own "cluster" step = embeddings + clusters.
  meta_clusters  reduce_clusters_from_base_clusters(MetaClusterModel), stopped at
                 profile.stage_timeout_s (else META_TIME_LIMIT_S): Kura's loop has no iteration cap
  projections    reduce_dimensionality_from_clusters(HDBUMAP) over the base clusters (this stage's
                 inputs; Kura's CLI also passes the meta clusters). Kura projects clusters, not
                 conversations: every conversation gets its cluster's point.
No checkpoint manager is passed: Kura's Parquet checkpoints do not reload under pandas 3, and our
stage outputs are the checkpoints. API counts come from the simulator's request log (kura_api_log).
Against a real endpoint with `--api-log`, Kura's requests go through the recording proxy (kura_perf/proxy/),
which writes the request log `kura-perf calibrate` fits.
"""

from __future__ import annotations

import contextlib
import threading

import pandas as pd

from kura_perf.backends.conversion import conversations_from_table
from kura_perf.backends.kura_api import KuraApi
from kura_perf.backends.kura_fast_contrastive import fast_contrastive_examples
from kura_perf.backends.kura_loop import KuraLoop
from kura_perf.backends.kura_models import KuraModels, check_profile, require_kura, stored_embeddings
from kura_perf.backends.model_factory import api_settings
from kura_perf.backends.reference import ReferenceBackend, _truth
from kura_perf.errors import BreakingPoint, StageError
from kura_perf.files.outputs import StageData
from kura_perf.meter.api import ApiCounters
from kura_perf.models.jit_cache import import_umap
from kura_perf.profiles import Profile
from kura_perf.settings.run import RunSettings
from kura_perf.settings.third_party_env import openai_for_kura
from kura_perf.stages.base import StageInputs, StageResult
from kura_perf.stages.embeddings import check_embeddings
from kura_perf.stages.quality import clustering_quality

META_TIME_LIMIT_S = 600.0
OPENAI_BASE_URL = "https://api.openai.com/v1"  # the openai client's own default, when no endpoint is named  # for meta_clusters when the profile sets no stage_timeout_s


class KuraFailure(StageError):
    """Kura raised: the message names Kura's call, the root cause and the API traffic until then."""

    def __init__(self, stage: str, call: str, error: BaseException, api: ApiCounters | None):
        chain = [error]
        while chain[-1].__cause__ is not None and len(chain) < 10:
            chain.append(chain[-1].__cause__)
        root = chain[-1]
        lines = " / ".join(line.strip() for line in str(root).splitlines() if line.strip())
        causes = " <- ".join(type(e).__name__ for e in chain[:-1])
        traffic = (f" (after {api.calls} API calls: {api.rate_limited} answered 429, "
                   f"{api.errors - api.rate_limited} other errors)") if api is not None else ""
        super().__init__(f"{stage}: Kura's {call} failed: {causes + ' <- ' if causes else ''}"
                         f"{type(root).__name__}: {lines[:500]}{traffic}")
        self.kura_error = error  # the original, traceback included
        self.api = api  # the traffic until the failure, for the stage record's API columns


class KuraBackend:
    name = "kura"

    def __init__(self, profile: Profile, settings: RunSettings):
        self.kura_version = require_kura(profile)
        check_profile(profile)
        self.profile = profile
        self.settings = settings
        self._models: KuraModels | None = None
        self._loop = None
        self._ledger = None
        self._openai_env = None  # Kura's clients read their endpoint and key from the environment only
        self._proxy = None  # the recording proxy in front of a real endpoint, when the run keeps an api log
        self.api = KuraApi()  # where this Kura keeps each function, looked up on first use
        self._layout: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _ready(self) -> KuraModels:
        """Point Kura's openai clients at the profile's endpoint and start the loop, once per backend."""
        if self._models is None:
            from kura_perf.backends.kura_api_log import SimulatorLedger

            settings = api_settings(self.profile, self.settings)  # ProfileError if the simulator or key is missing
            base_url = settings.base_url
            if self.settings.api_log and not self.profile.api.simulate:
                base_url = self._start_proxy(base_url or OPENAI_BASE_URL)
            self._openai_env = openai_for_kura(settings.api_key, base_url)
            self._ledger = (SimulatorLedger(settings.base_url, self.profile.api.prices or None)
                            if self.profile.api.simulate else None)
            self._loop = KuraLoop(name=f"kura-{self.profile.name}")
            self._models = KuraModels(self.profile)
        return self._models

    def _start_proxy(self, upstream: str) -> str:
        """Kura's own openai clients keep no request log, so against a real endpoint with an api log
        (`--api-log`) Kura is pointed at a recording proxy (kura_perf/proxy/) in front of the endpoint:
        every request Kura sends becomes one line of the log `kura-perf calibrate` fits. The proxy is
        a process group of its own, stopped by close()."""
        from kura_perf.proxy.process import ProxyProcess

        self._proxy = ProxyProcess(upstream, self.settings.api_log).start()
        return self._proxy.base_url

    def _call(self, stage: str, call: str, coro, time_limit_s: float | None = None, progress=None,
              total: int | None = None):
        """Run one Kura coroutine; return (its result, the API traffic it caused). progress/total: for
        a call that sends one request per item (summaries), its progress is read off the simulator's
        request log while Kura runs (Kura itself reports none), so a stage stopped at a limit or by
        Ctrl-C still says how far it got and gets a projection."""
        before = self._ledger.snapshot() if self._ledger else None
        watch = (LedgerProgress(self._ledger, before, progress, total)
                 if self._ledger and progress is not None and total else None)
        try:
            with watch or contextlib.nullcontext():
                result = self._loop.run(coro, stage, time_limit_s or self.profile.stage_timeout_s)
        except BreakingPoint:
            raise
        except Exception as exc:  # Kura's own failure: recorded as failed, with its cause in the message
            # Not chained: Dagster and the CLI report the innermost cause, which for Kura is often the
            # last line of a pydantic dump; the message already names the chain and the root cause.
            raise KuraFailure(stage, call, exc, self._traffic(before)) from None
        return result, self._traffic(before)

    def _traffic(self, before: dict | None) -> ApiCounters | None:
        if before is None:
            return None
        try:
            return self._ledger.counters_since(before)
        except OSError:  # the simulator went away: no counts rather than a second failure
            return None

    def _layout_line(self) -> str:
        """Which Kura layout this is (kura_api.describe), logged once per backend. Called after _ready:
        importing some of Kura's modules builds an OpenAI client, which needs the key set there."""
        if self._layout is None:
            import logging

            self._layout = self.api.describe()
            logging.getLogger("kura_perf").info("kura %s: %s", self.kura_version, self._layout)
        return self._layout

    def _extra(self, call: str, **more) -> dict:
        return {"kura_version": self.kura_version, "kura_call": call, "kura_layout": self._layout,
                "api_counts_from": "simulator request log" if self._ledger else None, **more}

    def close(self) -> None:
        try:
            if self._loop is not None:
                self._loop.close(self._models.clients() if self._models else [])
                self._loop = None
            if self._openai_env is not None:
                self._openai_env.undo()
                self._openai_env = None
        finally:
            if self._proxy is not None:  # stopped whatever else failed: no proxy outlives its run
                self._proxy.stop()
                self._proxy = None

    def run(self, stage: str, inputs: StageInputs) -> StageResult:
        return getattr(self, f"_{stage}")(inputs)

    # -- stages -----------------------------------------------------------------------------------
    def _conversations(self, inputs: StageInputs) -> StageResult:
        result = ReferenceBackend(self.profile, self.settings).run("conversations", inputs)
        result.extra["kura_version"] = self.kura_version
        return result

    def _summaries(self, inputs: StageInputs) -> StageResult:
        from kura_perf.backends.kura_types import hidden_metadata_keys, kura_conversation, summaries_to_table

        models = self._ready()
        summarise_conversations = self.api.get("summarise_conversations")
        self._layout_line()
        conversations = conversations_from_table(inputs.upstream["conversations"].tables["main"])
        hidden = hidden_metadata_keys(self.profile.truth_levels)
        kura_conversations = [kura_conversation(c, hidden) for c in conversations]
        model = models.summary_model()
        summaries, api = self._call("summaries", "summarise_conversations", summarise_conversations(
            kura_conversations, model=model, checkpoint_manager=None), progress=inputs.progress,
            total=len(kura_conversations))
        table = summaries_to_table(summaries, [c.chat_id for c in conversations])
        return StageResult(StageData(tables={"main": table}), items_in=len(conversations), items_out=len(table),
                           api=api, extra=self._extra("summarise_conversations", model=model.model))

    def _embeddings(self, inputs: StageInputs) -> StageResult:
        from kura_perf.backends.kura_types import summaries_from_table

        models = self._ready()
        self._layout_line()
        table = inputs.upstream["summaries"].tables["main"]
        summaries = summaries_from_table(table)
        model = models.embedding_model()
        if self.api.has("embed_summaries"):
            call = "embed_summaries"
            items, api = self._call("embeddings", call, self.api.get("embed_summaries")(summaries, model))
            found = [item["embedding"] for item in items]
        else:  # Kura 0.5.0: the embedding its ClusterModel.cluster_summaries does first, on its own
            call = "ClusterModel._embed_summaries"
            cluster_model = models.cluster_model(model, models.clustering_method())
            found, api = self._call("embeddings", call, cluster_model._embed_summaries(summaries))
        chat_ids = table["chat_id"].tolist()
        vectors = check_embeddings(found, len(table), models.embedding_dimension(), _slug(model), chat_ids)
        return StageResult(StageData(tables={"ids": pd.DataFrame({"chat_id": chat_ids})}, arrays={"main": vectors}),
                           items_in=len(table), items_out=len(vectors), api=_if_used(api),
                           extra=self._extra(call, model=_slug(model), dimension=int(vectors.shape[1])))

    def _clusters(self, inputs: StageInputs) -> StageResult:
        from kura_perf.backends.kura_types import clusters_to_tables, summaries_from_table

        models = self._ready()
        self._layout_line()
        generate = self.api.get("generate_base_clusters_from_conversation_summaries")
        table = inputs.upstream["summaries"].tables["main"]
        vectors = inputs.upstream["embeddings"].arrays["main"]
        chat_ids = table["chat_id"].tolist()
        if inputs.upstream["embeddings"].tables["ids"]["chat_id"].tolist() != chat_ids:
            raise StageError("clusters: the embeddings' rows are not the summaries' (re-run the embeddings stage)")
        method = models.clustering_method()
        stored = stored_embeddings(table["embed_text"].tolist(), vectors)
        if self.api.clusters_take_model():  # Kura 0.5.0: one ClusterModel embeds (here: hands back), clusters, names
            coro = generate(summaries_from_table(table), model=models.cluster_model(stored, method),
                            checkpoint_manager=None)
        else:
            coro = generate(summaries_from_table(table), embedding_model=stored, clustering_method=method,
                            clustering_model=models.description_model(), checkpoint_manager=None)
        with fast_contrastive_examples(bool(self.profile.kura_fast_contrastive), self.profile.seed) as patch:
            clusters, api = self._call("clusters", "generate_base_clusters_from_conversation_summaries", coro)
        main, assignments = clusters_to_tables(clusters, chat_ids)
        truth = _truth(inputs.upstream["conversations"].tables["main"], table, self.profile.truth_levels)
        quality = clustering_quality(vectors, assignments["cluster_id"].to_numpy(), truth=truth,
                                     seed=self.profile.seed)
        extra = self._extra("generate_base_clusters_from_conversation_summaries", method=type(method).__name__,
                            params=dict(self.profile.clustering_params))
        if patch:
            extra["kura_patch"] = patch
        if self.profile.clustering == "hdbscan":
            extra["noise"] = "Kura folds HDBSCAN noise into one more named cluster: no -1 assignments"
        return StageResult(StageData(tables={"main": main, "assignments": assignments}), items_in=len(table),
                           items_out=len(main), quality=quality, api=api, extra=extra)

    def _meta_clusters(self, inputs: StageInputs) -> StageResult:
        from kura_perf.backends.kura_types import clusters_from_tables, hierarchy_table

        models = self._ready()
        self._layout_line()
        reduce_clusters_from_base_clusters = self.api.get("reduce_clusters_from_base_clusters")
        stored = inputs.upstream["clusters"]
        base = clusters_from_tables(stored.tables["main"], stored.tables["assignments"])
        limit = self.profile.stage_timeout_s or META_TIME_LIMIT_S
        reduced, api = self._call("meta_clusters", "reduce_clusters_from_base_clusters",
                                  reduce_clusters_from_base_clusters(base, model=models.meta_model(),
                                                                     checkpoint_manager=None),
                                  time_limit_s=limit)
        table = hierarchy_table(reduced, {c.id for c in base})
        levels = int(table["level"].max()) + 1 if len(table) else 0
        return StageResult(StageData(tables={"main": table}), items_in=len(base), items_out=len(table), api=api,
                           extra=self._extra("reduce_clusters_from_base_clusters", iterations=max(levels - 1, 0),
                                             cap_hit=False, time_limit_s=limit, levels=levels,
                                             roots=int(table["parent_id"].isna().sum())))

    def _projections(self, inputs: StageInputs) -> StageResult:
        models = self._ready()  # first: importing kura.dimensionality needs OPENAI_API_KEY
        import_umap()  # before Kura imports umap: its numba code cached and its compiles timed
        self._layout_line()
        reduce_dimensionality_from_clusters = self.api.get("reduce_dimensionality_from_clusters")

        from kura_perf.backends.kura_types import clusters_from_tables, projection_table

        stored = inputs.upstream["clusters"]
        assignments = stored.tables["assignments"]
        base = clusters_from_tables(stored.tables["main"], assignments)
        projected, api = self._call("projections", "reduce_dimensionality_from_clusters",
                                    reduce_dimensionality_from_clusters(base, model=models.projection_model(),
                                                                        checkpoint_manager=None))
        table = projection_table(projected, assignments)
        return StageResult(StageData(tables={"main": table}), items_in=len(assignments), items_out=len(table),
                           api=_if_used(api),
                           extra=self._extra("reduce_dimensionality_from_clusters", points=len(projected),
                                             method="HDBUMAP over clusters"))


class LedgerProgress:
    """Reports a Kura call's progress from the simulator's request log: every `every_s`, the answered
    requests (calls that were not errors) since `before`, capped at `total`; once more at the end."""

    def __init__(self, ledger, before: dict, progress, total: int, every_s: float = 2.0):
        self.ledger, self.before, self.progress, self.total, self.every_s = ledger, before, progress, total, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kura-ledger-progress", daemon=True)

    def done(self) -> int | None:
        try:
            counters = self.ledger.counters_since(self.before)
        except Exception:  # noqa: BLE001 - the simulator went away: no progress rather than a failure
            return None
        return min(self.total, max(counters.calls - counters.errors, 0))

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            done = self.done()
            if done is not None:
                self.progress(done, self.total)

    def __enter__(self) -> "LedgerProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        done = self.done()
        if done is not None:
            self.progress(done, self.total)


def _slug(model) -> str:
    """The embedding model's slug (Kura 0.5.0's SentenceTransformerEmbeddingModel has no slug())."""
    slug = getattr(model, "slug", None)
    return slug() if callable(slug) else type(model).__name__


def _if_used(api: ApiCounters | None) -> ApiCounters | None:
    """Counters for a stage whose models may be local: none unless it sent a request."""
    return api if api is not None and api.calls > 0 else None


__all__ = ["KuraBackend", "KuraFailure", "META_TIME_LIMIT_S"]
