"""all-MiniLM-L6-v2 on onnxruntime: the `onnx` and `onnx-int8` embedding backends.

Same vectors as sentence-transformers (checked on export, kura_perf/models/onnx_export.py): the
model folder's own tokenizer.json through `tokenizers`, truncation at sentence-transformers'
max_seq_length (256 for MiniLM), padding to the longest text of a batch, and mean pooling + L2 norm
inside the exported graph. No torch in the embedding loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kura_perf.errors import KuraPerfError
from kura_perf.models.onnx_export import INPUT_NAMES, ExportCache, ExportedModel
from kura_perf.models.protocols import EncodesBare, PreparesModel, ReportsProgress

Progress = Callable[[int, int], None]

DEFAULT_MAX_SEQ_LENGTH = 256
PROGRESS_EVERY = 256


def max_seq_length(model_path: str) -> int:
    """sentence-transformers' truncation length for the folder (sentence_bert_config.json)."""
    config = Path(model_path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return DEFAULT_MAX_SEQ_LENGTH


class OnnxEncoder:
    """One onnxruntime session + tokenizer: texts in a given order -> L2-normalised float32 rows."""

    def __init__(self, model_file: Path, model_path: str, max_length: int, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer_file = Path(model_path) / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise KuraPerfError(f"no tokenizer.json in the embedding model folder '{model_path}'")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.dimension = int(self.session.get_outputs()[0].shape[-1])

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.session.run(None, {name: feeds[name] for name in INPUT_NAMES})[0]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Texts in order, in plain batches: what the export check and the model-only timing run."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate([self.encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])


class OnnxEmbedding(ReportsProgress, PreparesModel, EncodesBare):
    """EmbeddingModel for embedding_backend `onnx` / `onnx-int8`; the export is made or verified by prepare()."""

    def __init__(self, backend: str, cache: ExportCache, batch_size: int = 32, name: str = "all-MiniLM-L6-v2",
                 dimension: int = 384, threads: int | None = None):
        if batch_size < 1:
            raise KuraPerfError(f"batch_size must be at least 1 (got {batch_size})")
        self.backend = backend
        self.cache = cache
        self.batch_size = batch_size
        self.name = name
        self.dimension = dimension
        self.threads = threads
        self.export: ExportedModel | None = None
        self._encoder: OnnxEncoder | None = None

    def prepare(self) -> dict:
        """Export (first use on this machine) or verify the cached export; open the session."""
        if self._encoder is None:
            self.export = self.cache.get(self.backend)
            self._encoder = OnnxEncoder(self.export.path, self.cache.model_path, self.cache.max_seq_length,
                                        self.threads)
            if self._encoder.dimension != self.dimension:
                raise KuraPerfError(f"embedding model '{self.name}' ({self.backend}) gives {self._encoder.dimension}-d "
                                    f"vectors, configured dimension is {self.dimension}")
        export = self.export
        return {"onnx_exported_now": export.exported_now, "model_setup_s": round(export.setup_s, 3),
                "onnx_model": str(export.path), "onnx_check": export.manifest.get("agreement"),
                "onnx_min_cosine_required": self.cache.threshold(self.backend)}

    def bare_encode(self, texts: Sequence[str]) -> np.ndarray:
        """The backend alone (tokenize + session, plain batches): the model-only throughput."""
        self.prepare()
        return self._encoder.encode(texts, self.batch_size)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        texts = list(texts)
        total = len(texts)
        if total == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.prepare()
        # Longest first, so each batch pads to a similar length; rows go back to input order.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((total, self.dimension), dtype=np.float32)
        reported = 0
        for start in range(0, total, self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encoder.encode_batch([texts[i] for i in rows])
            done = start + len(rows)
            # At least PROGRESS_EVERY texts apart, and at the end: with batch 1, a report per text would cost
            # more than it tells.
            if progress is not None and (done - reported >= PROGRESS_EVERY or done == total):
                progress(done, total)
                reported = done
        return out
