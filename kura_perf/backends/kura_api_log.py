"""Kura's API traffic, counted from the simulator's own request log.

Kura calls its LLMs through instructor + openai clients it creates itself, so we cannot put our
counting transport under them without changing Kura. The simulator logs every request once, when
its outcome is decided (status, tokens, injected fault): the log's change across a stage is what
the stage sent. This assumes nothing else uses the same simulator meanwhile (true for a run: the
simulator resource starts one per run, and the in-process executor runs one stage at a time).

Latencies are not in the log, so Kura records carry no latency percentiles.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kura_perf.meter.api import ApiCounters
from kura_perf.models.openai_api.prices import cost_usd, unpriced_warning
from kura_perf.simulator.process import SimulatorControl

_NOT_API = {"models"}  # model listing is not a billed call


class SimulatorLedger:
    """`before = ledger.snapshot(); ...; ledger.counters_since(before)`."""

    def __init__(self, base_url: str, prices: dict | None = None):
        self.prices = prices  # the profile's price overrides
        self.control = SimulatorControl()
        self.control.port = urlsplit(base_url).port or 80

    def snapshot(self) -> dict:
        return self.control.log()

    def counters_since(self, before: dict) -> ApiCounters:
        return counters_between(before, self.snapshot(), self.prices)


def _entries(log: dict) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    return {(e["endpoint"], e["model"], e["status"]): (e["count"], e["prompt_tokens"], e["completion_tokens"])
            for e in log.get("entries", []) if e["endpoint"] not in _NOT_API}


def counters_between(before: dict, after: dict, prices: dict | None = None) -> ApiCounters:
    """What was sent between two log snapshots. Retries = failed answers: a stage only succeeds when
    every failed request was retried (instructor's re-asks after a schema failure are 200s, counted
    as calls but not as retries)."""
    old, new = _entries(before), _entries(after)
    counters = ApiCounters()
    for key, (count, prompt, completion) in new.items():
        count0, prompt0, completion0 = old.get(key, (0, 0, 0))
        calls, tokens_in, tokens_out = count - count0, prompt - prompt0, completion - completion0
        if calls <= 0:
            continue
        _, model, status = key
        cost = cost_usd(model, tokens_in, tokens_out, prices)
        if cost is None:
            counters.note_unpriced(model, unpriced_warning(model))
            cost = 0.0
        counters.add(calls=calls, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost)
        if status != "200":
            counters.add(errors=calls, retries=calls, rate_limited=calls if status == "429" else 0)
    timeouts = after.get("faults", {}).get("timeout", 0) - before.get("faults", {}).get("timeout", 0)
    counters.add(timeouts=max(timeouts, 0))
    return counters
