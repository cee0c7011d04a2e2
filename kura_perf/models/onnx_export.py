"""ONNX exports of the shipped all-MiniLM-L6-v2 weights: made once per machine, checked against torch.

Why our own export: sentence-transformers' ONNX backend needs optimum-onnx, whose releases all want
transformers < 4.58, which sentence-transformers 6 (transformers >= 5) cannot have: pip's resolver
refuses `sentence-transformers[onnx]` under our pins. So the weights are exported here with
torch.onnx (TorchScript exporter) and run with onnxruntime + tokenizers (kura_perf/models/onnx_embedding.py).

What the exported graph is: BERT loaded with *eager* attention (plain matmul + softmax + mask: no
trace-time branch on the mask's contents; an earlier SDPA export was reported at cosine 0.94, which
did not reproduce with this exporter and these versions, cosine 1.0000 on the check sample and on
200 corpus texts, but eager costs nothing and is what the check below has passed), then mean pooling
over the attention mask and L2 normalisation inside the graph, so one session call returns sentence-transformers'
vectors. `onnx-int8` is onnxruntime's dynamic int8 quantization of that graph with per-channel
weight scales (per-tensor scales kept a 0.96 mean cosine yet lost 0.12 ARI; see README).

The cache: <data root>/model_cache/onnx/<variant>-<key>/ holds model.onnx and manifest.json. The key
hashes the weights, tokenizer and configs, the versions of torch, transformers, onnx and
onnxruntime, and EXPORT_FORMAT, so a new version or new weights export anew and never reuse a stale
graph. An entry is built in a private temp folder, checked, then renamed into place (atomic), under
an flock so two processes on one machine export once; a disagreeing export never lands.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kura_perf.corpus import generate_conversations
from kura_perf.errors import KuraPerfError
from kura_perf.files.atomic import publish
from kura_perf.models.offline_summary import OfflineSummaryModel

log = logging.getLogger("kura_perf")

EXPORT_FORMAT = 1  # bump when the exported graph changes (inputs, pooling, opset, quantization)
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
VARIANTS = {"onnx": "fp32", "onnx-int8": "int8"}

# The least cosine to torch, over every text of the check sample, that a backend may show before
# it is used. fp32 is the same arithmetic reordered (measured min 1.0000): anything below 0.999 is a
# broken export. int8 per-channel measured min 0.983 / mean 0.993 on the 1K corpus texts and
# kept torch's UMAP+HDBSCAN ARI; per-tensor int8 (min ~0.87, mean 0.957) lost 0.12 ARI and is
# below this line. Figures: README "Embedding backends".
MIN_COSINE = {"onnx": 0.999, "onnx-int8": 0.97}

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                 "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")


class EmbeddingBackendError(KuraPerfError):
    """An embedding backend that cannot be used: the export failed, or disagrees with torch."""


@dataclass(frozen=True)
class Agreement:
    """Cosine of a backend's vectors to torch's on the same texts."""

    n: int
    min_cosine: float
    mean_cosine: float

    def as_dict(self) -> dict:
        return {"n": self.n, "min_cosine": round(self.min_cosine, 6), "mean_cosine": round(self.mean_cosine, 6)}


@dataclass(frozen=True)
class ExportedModel:
    backend: str
    path: Path  # model.onnx
    manifest: dict
    exported_now: bool  # this process made the export (first use on this machine)
    setup_s: float  # export + check, or hash verification of a cached entry


def agreement(vectors: np.ndarray, reference: np.ndarray) -> Agreement:
    """Row-wise cosine of two (n, d) matrices (both L2-normalised by their models, normalised again here)."""
    a = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    cos = (a * b).sum(axis=1)
    return Agreement(n=len(cos), min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))


def require_agreement(backend: str, found: Agreement, threshold: float, where: str) -> None:
    """Refuse a backend whose least cosine to torch is below `threshold`, saying by how much."""
    if not found.min_cosine >= threshold:  # also refuses NaN
        raise EmbeddingBackendError(
            f"embedding_backend '{backend}' disagrees with torch (sentence-transformers) on the {found.n}-text "
            f"check sample: min cosine {found.min_cosine:.4f}, mean {found.mean_cosine:.4f}, required min "
            f"cosine >= {threshold:.4f} ({where}); use embedding_backend = \"torch\" or fix the export")


def check_texts() -> list[str]:
    """The fixed texts every export is checked on: 56 summaries of synthetic conversations (the text the
    pipeline embeds) plus odd cases: empty, one word, non-Latin scripts, code, and a text far past the
    256-token limit (so truncation must match sentence-transformers')."""
    from kura_perf.stages.summaries import embed_text

    conversations = generate_conversations(56, seed=20_240_601)
    texts = [embed_text(fields) for fields in OfflineSummaryModel().summarise(conversations)]
    long_text = " ".join(f"sentence {i} about tax returns, hiking boots and sourdough starters." for i in range(120))
    return texts + [
        "",
        "hello",
        "¿Cómo puedo renovar mi pasaporte? Necesito viajar el próximo mes.",
        "日本語で履歴書の書き方を教えてください。",
        "def median(xs):\n    xs = sorted(xs)\n    return xs[len(xs) // 2]  # why is this wrong for even n?",
        "My landlord won't return the deposit!!! 😡 what are my rights in Ontario",
        "SELECT user_id, count(*) FROM orders GROUP BY 1 HAVING count(*) > 3;",
        long_text,
    ]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_fingerprint(model_path: str | os.PathLike) -> str:
    """sha256 over the weights, tokenizer and configs of a sentence-transformers folder."""
    root = Path(model_path)
    weights = [name for name in _WEIGHT_FILES if (root / name).is_file()]
    if not weights:
        raise EmbeddingBackendError(f"no weights ({' or '.join(_WEIGHT_FILES)}) in the embedding model folder '{root}'")
    digest = hashlib.sha256()
    for name in (*weights, *_CONFIG_FILES):
        if (root / name).is_file():
            digest.update(name.encode() + b"\0" + _sha256(root / name).encode() + b"\0")
    return digest.hexdigest()


def toolchain_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def cache_key(weights_sha: str, versions: dict[str, str]) -> str:
    payload = json.dumps({"weights": weights_sha, "versions": versions, "format": EXPORT_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def export_fp32(model_path: str, target: Path, max_seq_length: int) -> None:
    """torch.onnx export of BERT (eager attention) + masked mean pooling + L2 norm, dynamic batch and length."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(model_path, attn_implementation="eager", local_files_only=True).eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    length = min(16, max_seq_length)
    example = (torch.ones(2, length, dtype=torch.long), torch.ones(2, length, dtype=torch.long),
               torch.zeros(2, length, dtype=torch.long))
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and indexing notes
        torch.onnx.export(SentenceEmbedding(bert), example, str(target), input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


class QuantizationChatter(logging.Filter):
    """Drops what onnxruntime's quantizer says through the ROOT logger (`logging.info(...)`, so no
    logger name to set a level on): ~40 `Quantization parameters for tensor:"..." not specified` INFO
    lines per export (dynamic quantization has no activation parameters by design), and its advice to
    run its pre-processing first (a WARNING; we quantize our own exported graph, and the result is
    checked against torch, MIN_COSINE). Only records of onnxruntime's quantization package logged on
    the root logger are matched; its other warnings and errors, and everything else, pass."""

    PREPROCESSING_ADVICE = "Please consider to run pre-processing before quantization"

    def filter(self, record: logging.LogRecord) -> bool:
        parts = Path(record.pathname or "").parts
        if record.name != "root" or "onnxruntime" not in parts or "quantization" not in parts:
            return True
        if record.levelno < logging.WARNING:
            return False
        return not str(record.msg).startswith(self.PREPROCESSING_ADVICE)


@contextlib.contextmanager
def quiet_quantization():
    """QuantizationChatter on the root logger for the block, removed after. A filter on the root
    *logger* only sees records logged on it directly (logging.info), not those of named loggers
    propagating to its handlers, so no other library's or our own lines are touched."""
    chatter = QuantizationChatter()
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


@contextlib.contextmanager
def quiet_weight_loading():
    """transformers' `Loading weights` progress bars off for the block (the export and the torch
    reference each load BERT: two bars of a library on the first run's console), then as they were."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 weights with one scale per output channel (per-tensor loses topics, see MIN_COSINE)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantization():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


Exporter = Callable[[str, Path, int], None]


class ExportCache:
    """The ONNX exports of one sentence-transformers folder under `root` (<data root>/model_cache/onnx).

    `reference(texts)` embeds with torch (the model the check compares against); `exporter` and
    `quantizer` are the export steps (replaceable so tests can inject a broken one); `min_cosine`
    overrides MIN_COSINE for every backend (tests force an impossible 1.01).
    """

    def __init__(self, root: str | os.PathLike, model_path: str, max_seq_length: int,
                 reference: Callable[[Sequence[str]], np.ndarray], encoder_factory: Callable[[Path], object],
                 exporter: Exporter = export_fp32, quantizer: Callable[[Path, Path], None] = quantize_int8,
                 min_cosine: float | None = None):
        self.root = Path(root)
        self.model_path = model_path
        self.max_seq_length = max_seq_length
        self.reference = reference
        self.encoder_factory = encoder_factory  # model.onnx path -> object with .encode(texts) -> (n, d)
        self.exporter, self.quantizer = exporter, quantizer
        self.min_cosine = min_cosine
        self.exports_made = 0  # in this process (tests: the second load must not export again)
        self._key: str | None = None

    def threshold(self, backend: str) -> float:
        return self.min_cosine if self.min_cosine is not None else MIN_COSINE[backend]

    def key(self) -> str:
        if self._key is None:
            self._key = cache_key(weights_fingerprint(self.model_path), toolchain_versions())
        return self._key

    def entry_dir(self, backend: str) -> Path:
        return self.root / f"{VARIANTS[backend]}-{self.key()}"

    def get(self, backend: str) -> ExportedModel:
        """The checked export for `backend`, made now if this machine has none."""
        if backend not in VARIANTS:
            raise EmbeddingBackendError(f"no ONNX export for embedding_backend '{backend}'; "
                                        f"expected one of {', '.join(VARIANTS)}")
        t0 = time.perf_counter()
        entry = self.entry_dir(backend)
        if not (entry / "manifest.json").is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f"{entry.name}.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits, then finds the entry made
                try:
                    if not (entry / "manifest.json").is_file():
                        with quiet_weight_loading():
                            self._build(backend, entry)
                        made = self._verified(backend, entry, exported_now=True, t0=t0)
                        # The one line a first run shows for the export (onnxruntime's own are dropped).
                        log.info("embedding_backend '%s': exported the ONNX model and checked it against "
                                 "torch in %.1f s (once per machine; cached in %s)", backend, made.setup_s, entry)
                        return made
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        return self._verified(backend, entry, exported_now=False, t0=t0)

    def _source_onnx(self, backend: str, work: Path) -> Path:
        """The graph to write into `work`: fp32 straight from torch; int8 quantized from the fp32 entry."""
        target = work / "model.onnx"
        if backend == "onnx":
            try:
                self.exporter(self.model_path, target, self.max_seq_length)
            except EmbeddingBackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - any exporter failure refuses the backend
                raise EmbeddingBackendError(f"embedding_backend 'onnx': exporting '{self.model_path}' with "
                                            f"torch.onnx failed: {type(exc).__name__}: {exc}") from exc
        else:
            fp32 = self.get("onnx").path
            try:
                self.quantizer(fp32, target)
            except Exception as exc:  # noqa: BLE001 - any quantizer failure refuses the backend
                raise EmbeddingBackendError(f"embedding_backend '{backend}': int8 quantization of {fp32} "
                                            f"failed: {type(exc).__name__}: {exc}") from exc
        if not target.is_file() or target.stat().st_size == 0:
            raise EmbeddingBackendError(f"embedding_backend '{backend}': the export wrote no model file")
        return target

    def _build(self, backend: str, entry: Path) -> None:
        work = self.root / f".{entry.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            started = time.perf_counter()
            model_file = self._source_onnx(backend, work)
            texts = check_texts()
            try:
                vectors = np.asarray(self.encoder_factory(model_file).encode(texts), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - an export onnxruntime cannot run is refused
                raise EmbeddingBackendError(f"embedding_backend '{backend}': onnxruntime cannot run the exported "
                                            f"model ({type(exc).__name__}: {exc})") from exc
            reference = np.asarray(self.reference(texts), dtype=np.float32)
            if vectors.shape != reference.shape:
                raise EmbeddingBackendError(f"embedding_backend '{backend}': the export gives vectors of shape "
                                            f"{vectors.shape}, torch gives {reference.shape}")
            found = agreement(vectors, reference)
            threshold = self.threshold(backend)
            require_agreement(backend, found, threshold, "checked after export; nothing was cached")
            manifest = {
                "backend": backend, "format": EXPORT_FORMAT, "opset": OPSET, "model_path": self.model_path,
                "weights_sha256": weights_fingerprint(self.model_path), "versions": toolchain_versions(),
                "max_seq_length": self.max_seq_length, "model_sha256": _sha256(model_file),
                "model_bytes": model_file.stat().st_size, "agreement": found.as_dict(),
                "min_cosine_required": threshold, "export_s": round(time.perf_counter() - started, 3),
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
            try:
                publish(work, entry)  # atomic: readers see no entry or a whole, checked one
            except OSError:
                if not (entry / "manifest.json").is_file():  # not "someone else published it first"
                    raise
            self.exports_made += 1
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _verified(self, backend: str, entry: Path, exported_now: bool, t0: float) -> ExportedModel:
        """A cached entry is used only if its file is the one that was checked and its check still passes."""
        manifest_file = entry / "manifest.json"
        try:
            manifest = json.loads(manifest_file.read_text())
            recorded = Agreement(**manifest["agreement"])
            expected_sha = manifest["model_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddingBackendError(f"embedding_backend '{backend}': unreadable export manifest {manifest_file} "
                                        f"({exc}); delete {entry} to export again") from None
        model_file = entry / "model.onnx"
        if not model_file.is_file() or _sha256(model_file) != expected_sha:
            raise EmbeddingBackendError(f"embedding_backend '{backend}': {model_file} is missing or changed since it "
                                        f"was checked against torch; delete {entry} to export again")
        require_agreement(backend, recorded, self.threshold(backend), f"recorded in {manifest_file}")
        return ExportedModel(backend, model_file, manifest, exported_now, time.perf_counter() - t0)
