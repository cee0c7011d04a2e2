"""Embeddings through /v1/embeddings: batches of texts, several batches in flight."""

from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from kura_perf.errors import StageError
from kura_perf.models.openai_api.base import ApiModel
from kura_perf.models.openai_api.batch import all_or_fail
from kura_perf.models.openai_api.retries import InvalidOutput
from kura_perf.models.openai_api.settings import ApiSettings
from kura_perf.tokens import count_tokens

NATIVE_EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                               "text-embedding-ada-002": 1536}


class OpenAIEmbedding(ApiModel):
    """EmbeddingModel through /v1/embeddings: batches of `batch_size` texts, up to `concurrency` at once.

    `dimension` is sent as `dimensions` for text-embedding-3 models (the API shortens the vectors);
    other models must natively produce `dimension`-d vectors. Empty texts are sent as " " because the
    API rejects empty strings.
    """

    request_kind = "embeddings"

    def __init__(self, model: str, dimension: int | None = None, *, settings: ApiSettings, batch_size: int = 100):
        super().__init__(model, settings)
        self.dimension = dimension or NATIVE_EMBEDDING_DIMENSIONS.get(model, 1536)
        if not 1 <= batch_size <= 2048:
            raise ValueError(f"batch_size must be within 1..2048 (got {batch_size})")
        self.batch_size = batch_size
        self._send_dimensions = model.startswith("text-embedding-3")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        parts = self._run(lambda: all_or_fail([self._embed_batch(i, b) for i, b in enumerate(batches)]))
        return np.concatenate(parts).astype(np.float32, copy=False)

    async def _embed_batch(self, index: int, texts: list[str]) -> np.ndarray:
        inputs = [t if t else " " for t in texts]
        prompt = sum(count_tokens(t, self.model) for t in inputs)
        extra = {"dimensions": self.dimension} if self._send_dimensions else {}

        async def send() -> np.ndarray:
            response = await self._client.embeddings.create(
                model=self.model, input=inputs, encoding_format="base64", **extra,
            )
            rows = sorted(response.data, key=lambda d: d.index)
            if len(rows) != len(inputs):
                raise InvalidOutput(f"{len(rows)} vectors for {len(inputs)} inputs")
            vectors = np.stack([_decode_vector(r.embedding) for r in rows])
            if vectors.shape[1] != self.dimension:
                raise StageError(f"{self.name}: the API returns {vectors.shape[1]}-d vectors, "
                                 f"expected {self.dimension}-d")
            return vectors

        return await self._with_retries(f"embedding batch {index} ({len(inputs)} texts)", send, prompt)


def _decode_vector(data: Any) -> np.ndarray:
    if isinstance(data, str):
        return np.frombuffer(base64.b64decode(data), dtype="<f4")
    return np.asarray(data, dtype=np.float32)
