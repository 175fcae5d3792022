"""Fast CPU scoring with the shipped model, and the `Scorer` the scoring stage calls.

Scoring needs no torch: the artifact carries the network as an int8 ONNX graph
(`model-int8.onnx`, exported once by `finsent train`), run by ONNX Runtime. The graph takes
word vectors, not token ids: the backbone's word-embedding table stays in the backbone package
(half the model's size, never fine-tuned), and `BackboneText` looks the vectors up with numpy
next to the tokenizer from the same package.

Backends:
    onnx-int8   the shipped ONNX graph (the default; `auto` picks it)
    torch-fp32  the trained network as is, the reference (needs the `train` extra)
    torch-int8  PyTorch dynamic int8 of every Linear layer (needs the `train` extra)

Every backend pads each batch only to its own longest text and batches texts of similar length.

Batch invariance: int8 dynamic quantization as ONNX Runtime does it picks one activation scale
per tensor, so a text's probabilities would move with the texts that share its batch and with
the batch's padded width. The scoring stage's micro-batches depend on poll timing, so a live run
and a replay of the same stories would score them differently. With ``batch_invariant`` a
story's scores are a function of its own text only (for one backend):
- graphs exported since per-row activations (`onnx_rewrites`, recorded in the graph's
  metadata) quantize each token's vector on its own scale and sum over tokens at a fixed
  width, so they are batched (at most `INVARIANT_BATCH` texts a run, at ONNX Runtime's basic
  optimization level): the same bits alone, padded or in any batch;
- older graphs, and the torch backends, run each text alone, unpadded.
Either way ONNX runs go to a pool of single-threaded sessions, one per thread.

CPU independence (onnx-int8, batch-invariant): the same text gives the same float32 bits on an
AVX-512 VNNI CPU and on an AVX2-only one, so a feed gives the same alerts on either. Int8
dynamic quantization turns any last-bit difference upstream into a different rounded activation
and a score up to 0.17 away, so no rounding of the outputs could absorb such differences: the
graph avoids them instead. Its weights are 7-bit (exact integer sums on both kernels) and its
Softmax is written as plain operators (`onnx_rewrites.portable_softmax`); every node of the graph
then gave the same bits on both (bench/bench_cpu_determinism.py, under qemu's Haswell). From
those bits every `ScoredItem` field is exact: score and confidence rounded to 6 decimals
(Python's round of the exact value), topic probabilities to 4, labels the argmax with ties to
the first label in the artifact's order, top words ranked by summed α, ties in reading order.
CPUs without AVX2 and FMA, and ARM CPUs, give other bits (`verified_cpu`; the scorer warns).
"""

from __future__ import annotations

import importlib
import logging
import platform
import string
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from finsent.core.records import NewsItem, ScoredItem
from finsent.model.artifact import ONNX_MODEL, ArtifactInfo, read_artifact, set_threads
from finsent.model.backbone import backbone_dir
from finsent.model.data import length_buckets
from finsent.model.onnx_rewrites import rows_are_independent

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnx-int8", "torch-int8", "torch-fp32")
TOP_TOKENS = 5
_SKIP_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "[UNK]"}
# Attention often rests on function words; an analyst reading "why" wants the content words.
_STOPWORDS = frozenset(
    {"a", "an", "the", "of", "on", "in", "at", "to", "for", "from", "by", "with", "as", "and"}
    | {"or", "but", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that"}
    | {"these", "those", "after", "before", "over", "under", "into", "than", "then", "so"}
)
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
# Texts per run in batch-invariant batched scoring: each of the pool's single-threaded runs
# keeps its activations in cache; on 2 cores 16 beat 4, 8, 32 and 64 (bench/bench_model.py).
INVARIANT_BATCH = 16


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


class BackboneText:
    """The backbone's tokenizer (`tokenizers`, no transformers) and its word-embedding table."""

    def __init__(
        self,
        folder: Path | None = None,
        embeddings: bool = True,
        word_vectors: np.ndarray | None = None,  # (vocab, H): another table, e.g. a test net's
    ) -> None:
        from tokenizers import Tokenizer

        folder = folder or backbone_dir()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # padding is per batch, below
        self.pad_token_id = self.tokenizer.token_to_id("[PAD]")
        self.vocab_size = self.tokenizer.get_vocab_size()
        self._word_vectors = word_vectors
        if embeddings and word_vectors is None:
            from safetensors import safe_open

            with safe_open(str(folder / "model.safetensors"), framework="np") as weights:
                self._word_vectors = weights.get_tensor(WORD_EMBEDDINGS).astype(
                    np.float32, copy=False
                )

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids with [CLS] … [SEP], truncated to `max_length` (as transformers does)."""
        self.tokenizer.enable_truncation(max_length)
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) or "[UNK]" for i in ids]

    def word_vectors(self, ids: np.ndarray) -> np.ndarray:  # (B, T) → (B, T, H)
        if self._word_vectors is None:
            raise RuntimeError("BackboneText was built without its embeddings")
        return self._word_vectors[ids]


class Predictor:
    """Tokenize, bucket by length, pad per batch, run a backend, restore the input order."""

    backend = "base"
    # Whether each row of a padded batch gets the bits it would get alone (see the module doc).
    rows_are_independent = False

    def __init__(
        self,
        text: BackboneText,
        max_length: int,
        batch_size: int = 64,
        batch_invariant: bool = False,
        workers: int = 1,
    ) -> None:
        self.text = text
        self.max_length = max_length
        self.batch_size = batch_size
        self.batch_invariant = batch_invariant
        # Runs release the GIL, so single-text runs on a few threads use every core.
        self._pool = ThreadPoolExecutor(workers) if batch_invariant and workers > 1 else None

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def predict(self, texts: Sequence[str], explain: bool = True) -> Predictions:
        encoded = self.text.encode(texts, self.max_length)
        n = len(encoded)
        sentiment = np.zeros((n, 3), dtype=np.float32)
        topics: np.ndarray | None = None
        top: list[tuple[str, ...]] = [()] * n
        if self.batch_invariant and not self.rows_are_independent:
            batches: list[list[int]] = [[i] for i in range(n)]
        else:
            size = (
                min(self.batch_size, INVARIANT_BATCH) if self.batch_invariant else self.batch_size
            )
            batches = list(length_buckets([len(e) for e in encoded], size, seed=None))

        def run(batch: list[int]) -> tuple[np.ndarray, ...]:
            width = max(len(encoded[i]) for i in batch)
            ids = np.full((len(batch), width), self.text.pad_token_id, dtype=np.int64)
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
        for token, weight in zip(self.text.tokens(ids), alpha, strict=True):
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


class OnnxPredictor(Predictor):
    backend = "onnx-int8"

    def __init__(
        self,
        onnx_path: Path,
        text: BackboneText,
        max_length: int,
        threads: int,
        batch_size: int = 64,
        batch_invariant: bool = False,
    ) -> None:
        import onnxruntime as ort

        # Batch-invariant: `threads` single-threaded runs at once rather than one wide run.
        workers = threads if batch_invariant else 1
        super().__init__(text, max_length, batch_size, batch_invariant, workers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if batch_invariant else threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.rows_are_independent = rows_are_independent(metadata)
        if batch_invariant and self.rows_are_independent:
            # The extended fusions (SkipLayerNormalization, BiasGelu, FusedMatMul) sum in an
            # order that follows the padded width, so a padded row got other bits; the basic
            # level keeps the graph's own operators, and was no slower (1,128 against 1,060
            # headlines/s, 2 cores, medians of 5).
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        vectors = self.text.word_vectors(ids)
        return tuple(self.session.run(None, {"word_vectors": vectors, "attention_mask": mask}))


def make_predictor(
    artifact: ArtifactInfo,
    backend: str = "auto",
    threads: int = 0,
    batch_size: int = 64,
    batch_invariant: bool = False,
    text: BackboneText | None = None,
) -> Predictor:
    """A predictor for `artifact` on `backend`; torch backends need the `train` extra."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    threads = set_threads(threads)
    if backend in ("auto", "onnx-int8"):
        return OnnxPredictor(
            artifact.path / ONNX_MODEL,
            text or BackboneText(),
            artifact.max_length,
            threads,
            batch_size,
            batch_invariant,
        )
    from finsent.model.artifact import load_artifact
    from finsent.model.torch_infer import TorchPredictor  # the train extra

    set_threads(threads)  # now that torch is loaded, it takes the count too
    return TorchPredictor(
        load_artifact(artifact.path).network,
        text or BackboneText(embeddings=False),
        artifact.max_length,
        quantize=backend == "torch-int8",
        batch_size=batch_size,
        batch_invariant=batch_invariant,
    )


def verified_cpu() -> bool | None:
    """Whether this CPU is of the kind the onnx-int8 scores were found bit-identical across:
    x86-64 with AVX2 and FMA (AVX-512 or not). None where numpy does not say.

    Without AVX2 and FMA, ONNX Runtime's kernels round differently (an emulated SSE4.2 CPU gave
    other bits on 192 of 200 texts, a label on 1); ARM CPUs run other kernels altogether.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:  # numpy's CPUID reading: the one at hand that needs no new dependency
        core = importlib.import_module("numpy._core._multiarray_umath")
        features = core.__cpu_features__
    except (ImportError, AttributeError):
        return None
    return bool(features.get("AVX2") and features.get("FMA3"))


class AttentionScorer:
    """The default scorer: topic, sentiment, score, confidence and the words that drove them."""

    def __init__(
        self,
        artifact_path: Path | None = None,
        backend: str = "auto",
        threads: int = 0,
        batch_size: int = 64,
        batch_invariant: bool = True,
    ) -> None:
        self.artifact = read_artifact(artifact_path)
        self.predictor = make_predictor(
            self.artifact, backend, threads, batch_size, batch_invariant
        )
        self.version = f"{self.artifact.version}/{self.predictor.backend}"
        if self.predictor.backend == "onnx-int8" and verified_cpu() is False:
            log.warning(
                "this CPU (%s) lacks AVX2 or FMA: its scores, and so its alerts, can differ "
                "from those of x86-64 machines with them",
                platform.machine(),
            )

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
    "BackboneText",
    "OnnxPredictor",
    "Predictions",
    "make_predictor",
    "verified_cpu",
]
