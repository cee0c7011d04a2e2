"""API-backed summary, cluster-naming and embedding models over any OpenAI-compatible endpoint.

OpenAI itself, vLLM, Ollama, a gateway or our simulator: only `ApiSettings.base_url` differs.
One module per job:

- `settings`  ApiSettings: endpoint, key (masked), timeouts, retries, concurrency, prices
- `prices`    list prices per 1M tokens (dated); an unknown model's cost is unknown, never $0
- `headers`   OpenAI's x-ratelimit reset durations and retry-after
- `pacer`     staying under RPM/TPM: header budgets, slow start, estimates settled by usage
- `http`      counting every HTTP exchange at the transport (calls, errors, 429s, tokens, cost)
- `loop`      a private event loop per model (why: see there)
- `retries`   what is retried, how long to wait, when to give up (tenacity)
- `batch`     a batch of requests that fails as one without abandoning requests on the wire
- `base`      ApiModel: the machinery the three models share
- `summary`, `naming`, `embedding`: the three models
"""

from kura_perf.models.openai_api.base import ApiModel
from kura_perf.models.openai_api.embedding import NATIVE_EMBEDDING_DIMENSIONS, OpenAIEmbedding
from kura_perf.models.openai_api.headers import parse_reset, retry_after_s
from kura_perf.models.openai_api.naming import ClusterNameOutput, OpenAIClusterNamer
from kura_perf.models.openai_api.pacer import HeaderPacer
from kura_perf.models.openai_api.prices import PRICES_AS_OF, PRICES_PER_1M_TOKENS, cost_usd, price_for
from kura_perf.models.openai_api.retries import RETRYABLE_STATUS
from kura_perf.models.openai_api.settings import ApiSettings
from kura_perf.models.openai_api.summary import ConversationSummaryOutput, OpenAISummaryModel

__all__ = [
    "ApiModel", "ApiSettings", "ClusterNameOutput", "ConversationSummaryOutput", "HeaderPacer",
    "NATIVE_EMBEDDING_DIMENSIONS", "OpenAIClusterNamer", "OpenAIEmbedding", "OpenAISummaryModel",
    "PRICES_AS_OF", "PRICES_PER_1M_TOKENS", "RETRYABLE_STATUS", "cost_usd", "parse_reset", "price_for",
    "retry_after_s",
]
