"""The concurrency sweep: the same API stage at 1, 5, 10, 20 and 50 requests in flight, to find
where throughput stops growing and 429s start (proposal §1.1 "Concurrent Processing")."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import datetime, timezone
from typing import Sequence
from urllib.parse import urlparse

from kura_perf.backends.model_factory import api_settings
from kura_perf.corpus.types import Conversation
from kura_perf.errors import KuraPerfError
from kura_perf.meter.api import latency_percentiles, limit_share
from kura_perf.meter.host import code_version, host_info
from kura_perf.profiles import Profile
from kura_perf.proposal import CONCURRENCY_LEVELS
from kura_perf.settings.run import RunSettings
from kura_perf.simulator.process import SimulatorControl

DEFAULT_LEVELS = CONCURRENCY_LEVELS  # the proposal's §1.1 levels
SWEEP_EMBEDDING_BATCH = 8  # small batches, so that even a short sample has many requests to overlap


def _simulator_control(settings: RunSettings):
    """Control of the simulator serving this run, to restart its buckets between levels; None for a real API."""
    url = settings.simulator_url
    if not url:
        return None

    control = SimulatorControl()
    control.port = urlparse(url).port
    return control


def _build_model(profile: Profile, stage: str, concurrency: int, run_settings: RunSettings):
    from kura_perf.models.openai_api import OpenAIEmbedding, OpenAISummaryModel  # openai, aiohttp

    # A fixed number in flight: the sweep measures each level, so the adaptive controller stays off.
    settings = dataclasses.replace(api_settings(profile, run_settings), concurrency=concurrency, adaptive=False)
    if stage == "summaries":
        return OpenAISummaryModel(profile.summary_model.split(":", 1)[1], settings)
    return OpenAIEmbedding(profile.embedding_model.split(":", 1)[1], dimension=profile.embedding_dimension,
                           settings=settings, batch_size=SWEEP_EMBEDDING_BATCH)


def level_limits(model, calls: int, errors: int, tokens: int, wall_s: float) -> dict:
    """What the server's headers said the limits were, the rates achieved, and the binding share."""
    pacer = model._pacer
    rows = {"rpm_limit": pacer.requests.limit, "tpm_limit": pacer.tokens.limit,
            "requests_per_min": (calls - errors) / wall_s * 60 if wall_s > 0 else None,
            "tokens_per_min": tokens / wall_s * 60 if wall_s > 0 else None}
    shares = {"requests": limit_share(calls - errors, pacer.requests.capacity, wall_s, pacer.requests.limit),
              "tokens": limit_share(tokens, pacer.tokens.capacity, wall_s, pacer.tokens.limit)}
    known = {name: share for name, share in shares.items() if share is not None}
    binding = max(known, key=known.get) if known else None
    return {**rows, "binding_limit": binding, "limit_share": known.get(binding)}


def sweep_stages(profile: Profile) -> list[str]:
    stages = []
    if profile.summary_model.startswith("openai:"):
        stages.append("summaries")
    if profile.embedding_model.startswith("openai:"):
        stages.append("embeddings")
    return stages


def run_sweep(profile: Profile, scale: str, conversations: Sequence[Conversation], texts: Sequence[str],
              levels: Sequence[int] = DEFAULT_LEVELS, run_id: str | None = None, log=None,
              *, settings: RunSettings) -> list[dict]:
    """One row per (stage, level). A level that fails is recorded with its error; the sweep goes on.
    settings: the run's (the simulator serving it, the credentials' names), required."""
    stages = sweep_stages(profile)
    if not stages:
        raise KuraPerfError(f"profile '{profile.name}' has no API-backed summary or embedding model to sweep")
    control = _simulator_control(settings)
    run_id = run_id or uuid.uuid4().hex
    rows = []
    for stage in stages:
        for level in levels:
            if control is not None:
                control.reset()  # full buckets and an empty log: levels do not inherit each other's debt
            model = _build_model(profile, stage, level, settings)
            status, error = "success", None
            t0 = time.perf_counter()
            try:
                if stage == "summaries":
                    model.summarise(list(conversations))
                else:
                    model.embed(list(texts))
            except Exception as exc:  # noqa: BLE001 - a level that breaks is a finding, not a crash
                status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            wall = time.perf_counter() - t0
            c = model.counters
            limits = level_limits(model, c.calls, c.errors, c.tokens_in + c.tokens_out, wall)
            model.close()
            items = len(conversations) if stage == "summaries" else len(texts)
            rows.append({
                "record_id": uuid.uuid4().hex, "run_id": run_id, "recorded_at": datetime.now(timezone.utc),
                "profile": profile.name, "scale": scale, "stage": stage, "concurrency": level, "items": items,
                "wall_s": wall, "items_per_min": items / wall * 60 if wall > 0 and status == "success" else None,
                **latency_percentiles(c.latencies_s),
                "api_calls": c.calls, "api_429s": c.rate_limited,
                "share_429": c.rate_limited / c.calls if c.calls else None,
                "api_retries": c.retries, "api_errors": c.errors, "tokens_in": c.tokens_in,
                "tokens_out": c.tokens_out, "cost_usd": c.total_cost_usd,
                "cost_per_1k_conversations": (c.total_cost_usd / items * 1000
                                              if items and c.total_cost_usd is not None else None),
                "status": status, "error_message": error,
                "host_fingerprint": host_info()["host_fingerprint"], "code_version": code_version(),
                **limits,
            })
            if log:
                r = rows[-1]
                log(f"sweep {stage} concurrency={level}: {r['items_per_min'] or 0:.0f} items/min, "
                    f"{c.calls} calls, {c.rate_limited} x 429, {limits['limit_share'] or 0:.0%} of the "
                    f"{limits['binding_limit'] or '?'} limit, {status}")
    return rows
