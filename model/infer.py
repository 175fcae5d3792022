"""Fast CPU inference for the attention model, and the `Scorer` the scoring stage calls.

Three interchangeable backends run the same artifact:
    torch-fp32  the trained network as is (the reference)
    torch-int8  PyTorch dynamic int8 quantization of every Linear layer
    onnx-int8   the network exported to ONNX, weights quantized to int8, run by ONNX Runtime

`bench/bench_model.py` measures them; on 2 cores onnx-int8 is the fastest, so `auto` picks it
and falls back to torch-fp32 where ONNX Runtime is missing. Every backend pads each batch only
to its own longest text and batches texts of similar length together.

Batch invariance: int8 dynamic quantization picks one activation scale per tensor, so a text's
probabilities move (by up to 0.1 on the shipped model) with the texts that share its batch and
with the batch's padded width. The scoring stage's micro-batches depend on poll timing, so a
live run and a replay of the same stories would score them differently. With
``batch_invariant`` each text runs alone, unpadded, on a pool of single-threaded runs: a
story's scores are a function of its own text only, at about half the batched throughput.
"""

from __future__ import annotations

import copy
import logging
import string
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from finsent.records import NewsItem, ScoredItem
from finsent.settings import default_cache_dir
from model.artifact import Artifact, load_artifact, quiet_transformers, set_threads
from model.data import length_buckets
from model.network import FinsentNetwork, backbone_dir, sentiment_score

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnx-int8", "torch-int8", "torch-fp32")
TOP_TOKENS = 5
EXPORT_REVISION = 2  # bump when export_onnx changes, so cached ONNX models are rebuilt
_SKIP_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "[UNK]"}
# Attention often rests on function words; an analyst reading "why" wants the content words.
_STOPWORDS = frozenset(
    {"a", "an", "the", "of", "on", "in", "at", "to", "for", "from", "by", "with", "as", "and"}
    | {"or", "but", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that"}
    | {"these", "those", "after", "before", "over", "under", "into", "than", "then", "so"}
)


@dataclass
class Predictions:
    sentiment_probs: np.ndarray  # (N, 3) negative, neutral, positive
    topic_probs: np.ndarray  # (N, num_topics)
    top_tokens: list[tuple[str, ...]]  # per text, the words with the most attention

    @property
    def sentiment(self) -> np.ndarray:  # (N,) label indices
        return self.sentiment_probs.argmax(-1)

    @property
    def topic(self) -> np.ndarray:  # (N,)
        return self.topic_probs.argmax(-1)

    @property
    def score(self) -> np.ndarray:  # (N,) P(pos) − P(neg)
        return self.sentiment_probs[:, 2] - self.sentiment_probs[:, 0]


class _ProbsAndAttention(torch.nn.Module):
    """The network with plain tensor outputs, for tracing and ONNX export."""

    def __init__(self, network: FinsentNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.network(input_ids, attention_mask)
        return out.sentiment_probs, out.topic_probs, out.attention


class Predictor:
    """Tokenize, bucket by length, pad per batch, run a backend, restore the input order."""

    backend = "base"

    def __init__(
        self,
        tokenizer,
        max_length: int,
        batch_size: int = 64,
        batch_invariant: bool = False,
        workers: int = 1,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.batch_invariant = batch_invariant
        # Runs release the GIL, so single-text runs on a few threads use every core.
        self._pool = ThreadPoolExecutor(workers) if batch_invariant and workers > 1 else None

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def predict(self, texts: Sequence[str], explain: bool = True) -> Predictions:
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True
        )["input_ids"]
        n = len(encoded)
        sentiment = np.zeros((n, 3), dtype=np.float32)
        topics: np.ndarray | None = None
        top: list[tuple[str, ...]] = [()] * n
        if self.batch_invariant:
            batches: list[list[int]] = [[i] for i in range(n)]
        else:
            batches = list(length_buckets([len(e) for e in encoded], self.batch_size, seed=None))

        def run(batch: list[int]) -> tuple[np.ndarray, ...]:
            width = max(len(encoded[i]) for i in batch)
            ids = np.full((len(batch), width), self.tokenizer.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            return self._run(ids, mask)

        results = self._pool.map(run, batches) if self._pool else map(run, batches)
        for batch, (sent_p, topic_p, alpha) in zip(batches, results, strict=True):
            if topics is None:
                topics = np.zeros((n, topic_p.shape[1]), dtype=np.float32)
            sentiment[batch] = sent_p
            topics[batch] = topic_p
            if explain:
                for row, i in enumerate(batch):
                    top[i] = self.top_words(encoded[i], alpha[row, : len(encoded[i])])
        if topics is None:
            topics = np.zeros((0, 0), dtype=np.float32)
        return Predictions(sentiment, topics, top)

    def top_words(self, ids: Sequence[int], alpha: np.ndarray, k: int = TOP_TOKENS) -> tuple:
        """Whole words ranked by attention: word pieces add their α to the word they extend."""
        words: list[list] = []  # [word, weight]
        for token, weight in zip(
            self.tokenizer.convert_ids_to_tokens(list(ids)), alpha, strict=True
        ):
            if token in _SKIP_TOKENS:
                continue
            if token.startswith("##") and words:
                words[-1][0] += token[2:]
                words[-1][1] += float(weight)
            else:
                words.append([token, float(weight)])
        ranked: dict[str, float] = {}
        for word, weight in words:
            if word.strip(string.punctuation) and word not in _STOPWORDS:
                ranked[word] = ranked.get(word, 0.0) + weight
        return tuple(sorted(ranked, key=ranked.__getitem__, reverse=True)[:k])


class TorchPredictor(Predictor):
    def __init__(
        self,
        network: FinsentNetwork,
        tokenizer,
        max_length: int,
        quantize: bool = False,
        batch_size: int = 64,
        batch_invariant: bool = False,
    ) -> None:
        # One worker: torch's thread count is process-wide, so it parallelizes each run itself.
        super().__init__(tokenizer, max_length, batch_size, batch_invariant)
        network = network.eval()
        if quantize:
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # deprecated API, still the fastest
                network = quantize_dynamic(
                    copy.deepcopy(network), {torch.nn.Linear}, dtype=torch.qint8
                )
        self.module = _ProbsAndAttention(network).eval()
        self.backend = "torch-int8" if quantize else "torch-fp32"

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(ids), torch.from_numpy(mask))
        return tuple(t.float().numpy() for t in outputs)


class OnnxPredictor(Predictor):
    backend = "onnx-int8"

    def __init__(
        self,
        onnx_path: Path,
        tokenizer,
        max_length: int,
        threads: int,
        batch_size: int = 64,
        batch_invariant: bool = False,
    ) -> None:
        import onnxruntime as ort

        # Batch-invariant: `threads` single-threaded runs at once rather than one wide run.
        workers = threads if batch_invariant else 1
        super().__init__(tokenizer, max_length, batch_size, batch_invariant, workers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if batch_invariant else threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(None, {"input_ids": ids, "attention_mask": mask}))


def export_onnx(network: FinsentNetwork, out_dir: Path, keep_fp32: bool = False) -> Path:
    """Export to ONNX and quantize the weights to int8; returns the int8 model's path.

    Written to a temporary name and renamed, so a crash never leaves a half-written model that
    a later start would load.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32, int8 = out_dir / "model-fp32.onnx", out_dir / "model-int8.onnx"
    sample = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        # Tracing notes about Python-side shape checks; the export is verified against torch
        # with padded batches in tests/model/test_infer.py.
        warnings.simplefilter("ignore")
        _export(network, sample, fp32)
    partial = out_dir / "model-int8.onnx.partial"
    logging.disable(logging.INFO)  # the quantizer logs one root INFO line per tensor
    try:
        # Per-channel scales: on the first trained model, at most 0.42 accuracy points below
        # fp32 on any test split, against 0.54 with one scale per tensor, at the same speed.
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    partial.replace(int8)
    if not keep_fp32:
        fp32.unlink()
    return int8


def _export(network: FinsentNetwork, sample: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        _ProbsAndAttention(network.eval()),
        (sample, torch.ones_like(sample)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["sentiment_probs", "topic_probs", "attention"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "sentiment_probs": {0: "batch"},
            "topic_probs": {0: "batch"},
            "attention": {0: "batch", 1: "tokens"},
        },
        opset_version=17,
        dynamo=False,
    )


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(backbone_dir(), local_files_only=True)


def make_predictor(
    artifact: Artifact,
    backend: str = "auto",
    threads: int = 0,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    batch_invariant: bool = False,
) -> Predictor:
    """A predictor for `artifact` on `backend`; the ONNX model is built once and cached."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    quiet_transformers()
    threads = set_threads(threads)
    tokenizer = load_tokenizer()
    if backend in ("auto", "onnx-int8"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if backend == "onnx-int8":
                raise
            log.warning("onnxruntime is not installed; scoring with torch-fp32")
            backend = "torch-fp32"
        else:
            cache = cache_dir or default_cache_dir()
            folder = cache / "models" / artifact.version / f"onnx-r{EXPORT_REVISION}"
            onnx_path = folder / "model-int8.onnx"
            if not onnx_path.exists():
                log.info("building the int8 ONNX model for %s in %s", artifact.version, folder)
                export_onnx(artifact.network, folder)
            return OnnxPredictor(
                onnx_path, tokenizer, artifact.max_length, threads, batch_size, batch_invariant
            )
    return TorchPredictor(
        artifact.network,
        tokenizer,
        artifact.max_length,
        quantize=backend == "torch-int8",
        batch_size=batch_size,
        batch_invariant=batch_invariant,
    )


class AttentionScorer:
    """The default scorer: topic, sentiment, score, confidence and the words that drove them."""

    def __init__(
        self,
        artifact_path: Path | None = None,
        backend: str = "auto",
        threads: int = 0,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        batch_invariant: bool = True,
    ) -> None:
        self.artifact = load_artifact(artifact_path)
        self.predictor = make_predictor(
            self.artifact, backend, threads, cache_dir, batch_size, batch_invariant
        )
        self.version = f"{self.artifact.version}/{self.predictor.backend}"

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        if not items:
            return []
        # Headlines are what the model was trained on; a long body would only dilute them.
        predictions = self.predictor.predict([item.title for item in items])
        now = datetime.now(UTC)
        sentiments, topics = self.artifact.sentiments, self.artifact.topics
        scores = np.clip(predictions.score, -1.0, 1.0)
        scored = []
        for i, item in enumerate(items):
            probs = predictions.sentiment_probs[i]
            topic_probs = predictions.topic_probs[i]
            scored.append(
                ScoredItem(
                    item=item,
                    topic=topics[int(topic_probs.argmax())],
                    topic_probs={
                        name: round(float(p), 4)
                        for name, p in zip(topics, topic_probs, strict=True)
                    },
                    sentiment=sentiments[int(probs.argmax())],
                    score=round(float(scores[i]), 6),
                    confidence=round(float(probs.max()), 6),
                    top_tokens=predictions.top_tokens[i],
                    model_version=self.version,
                    scored_at=now,
                )
            )
        return scored


__all__ = [
    "AttentionScorer",
    "BACKENDS",
    "OnnxPredictor",
    "Predictions",
    "TorchPredictor",
    "export_onnx",
    "make_predictor",
    "sentiment_score",
]
