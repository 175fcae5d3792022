"""Typed records that travel between stages, each with a schema version and a JSON form.

Decoding an unknown version or a malformed payload raises ``RecordError``; stages route it to the
dead-letter topic with the raw payload, so nothing is lost.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from finsent.core.vocabulary import AlertState, Sentiment, Severity

SCHEMA_VERSION = 1

T = TypeVar("T")


class RecordError(ValueError):
    """A payload that cannot become a record: malformed JSON, a missing field, an unknown version."""

    def __init__(self, record_type: str, reason: str, payload: bytes | str = b"") -> None:
        super().__init__(f"cannot decode {record_type}: {reason}")
        self.record_type = record_type
        self.reason = reason
        self.payload = payload if isinstance(payload, bytes) else payload.encode("utf-8", "replace")


def utc(value: datetime) -> datetime:
    """The same instant in UTC; naive times are refused because their zone is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def stable_id(url: str, title: str, source: str) -> str:
    """A canonical URL when there is one, else a content hash: the same story gets the same id."""
    basis = url.strip() or f"{source.strip().lower()}\n{' '.join(title.lower().split())}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


def _normalize_times(record: Any, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        if value is not None:
            object.__setattr__(record, name, utc(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class NewsItem:
    schema: Literal[1] = 1
    id: str
    source: str
    title: str
    published_at: datetime
    fetched_at: datetime
    url: str = ""
    body: str = ""
    tickers: tuple[str, ...] = ()
    language: str = "en"
    time_inferred: bool = False  # no publish time in the source: fetch time stands in
    novelty: float = 100.0  # 100 for a first story, less for its repeats
    chain_id: str = ""
    # Per ticker: 1.0 when the title names it, lower when only the body does.
    ticker_relevance: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or not self.title.strip():
            raise ValueError("a NewsItem needs an id and a non-empty title")
        _normalize_times(self, "published_at", "fetched_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredItem:
    schema: Literal[1] = 1
    item: NewsItem
    topic: str
    topic_probs: dict[str, float] = field(default_factory=dict)
    sentiment: Sentiment
    score: float  # P(pos) - P(neg), in [-1, 1]
    confidence: float
    top_tokens: tuple[str, ...] = ()  # the words that drove the prediction
    model_version: str
    scored_at: datetime

    def __post_init__(self) -> None:
        if not -1.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} outside [-1, 1]")
        _normalize_times(self, "scored_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesPoint:
    """What one story contributes to one series' windows: the aggregator's input unit."""

    id: str
    published_at: datetime
    score: float
    confidence: float
    sentiment: Sentiment
    novelty: float = 100.0
    title: str = ""
    source: str = ""
    url: str = ""
    top_tokens: tuple[str, ...] = ()

    @classmethod
    def of(cls, s: ScoredItem) -> SeriesPoint:
        return cls(
            id=s.item.id,
            published_at=s.item.published_at,
            score=s.score,
            confidence=s.confidence,
            sentiment=s.sentiment,
            novelty=s.item.novelty,
            title=s.item.title,
            source=s.item.source,
            url=s.item.url,
            top_tokens=s.top_tokens,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyedPoint:
    """One point of one series, repartitioned so that one aggregator owns all of the key's
    windows (Kafka key = ``key``)."""

    schema: Literal[1] = 1
    key: str
    point: SeriesPoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline:
    id: str
    title: str
    score: float
    source: str = ""
    url: str = ""
    top_tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowStat:
    schema: Literal[1] = 1
    key: str  # "overall", "topic:Earnings", "ticker:AAPL", "source:wire"
    window_start: datetime
    window_end: datetime
    count: int
    weighted_count: float  # novelty-weighted: syndicated repeats count less
    mean_score: float
    weighted_mean_score: float  # confidence-weighted
    neg_share: float
    pos_share: float
    weighted_neg_share: float | None = None  # novelty-weighted; None in records before it
    top_headlines: tuple[Headline, ...] = ()
    # 0: a running update of an open window; 1: the window closed; > 1: late news restated it
    version: int = 1
    final: bool = True  # False only for running updates; alerting reads final windows
    emitted_at: datetime

    def __post_init__(self) -> None:
        _normalize_times(self, "window_start", "window_end", "emitted_at")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must follow window_start")


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    schema: Literal[1] = 1
    id: str  # stable across the alert's lifecycle events
    key: str
    state: AlertState
    severity: Severity
    rule: str
    window_start: datetime
    window_end: datetime
    neg_share: float
    baseline_mean: float
    baseline_std: float
    zscore: float
    count: int
    # Novelty-weighted evidence and the score baseline; None in records from before them.
    weighted_neg_share: float | None = None
    weighted_count: float | None = None
    mean_score: float | None = None
    baseline_score: float | None = None
    headlines: tuple[Headline, ...] = ()
    started_at: datetime  # event time of the window that fired it
    updated_at: datetime  # event time of the window behind this event
    message: str = ""

    def __post_init__(self) -> None:
        _normalize_times(self, "window_start", "window_end", "started_at", "updated_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    schema: Literal[1] = 1
    stage: str
    reason: str
    payload_b64: str  # the raw bytes, whole
    excerpt: str  # a readable head of the payload
    source_topic: str = ""
    partition: int = -1
    offset: int = -1
    source: str = ""  # the news source (feed, API, file) the bad input came from, if known
    at: datetime

    def __post_init__(self) -> None:
        _normalize_times(self, "at")

    @classmethod
    def of(
        cls,
        *,
        stage: str,
        reason: str,
        payload: bytes,
        at: datetime,
        source_topic: str = "",
        partition: int = -1,
        offset: int = -1,
        source: str = "",
    ) -> DeadLetter:
        return cls(
            source=source,
            stage=stage,
            reason=reason,
            payload_b64=base64.b64encode(payload).decode("ascii"),
            excerpt=payload[:500].decode("utf-8", "replace"),
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            at=at,
        )

    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


# One adapter per record class (building one compiles a validator). A plain dict rather than
# functools.cache, whose stubs type its arguments as Hashable, which mypy does not grant a class.
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:  # a race only builds a second, equal adapter
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def encode(record: Any) -> bytes:
    """The record's versioned JSON form."""
    return _adapter(type(record)).dump_json(record)


def to_jsonable(record: Any) -> Any:
    return _adapter(type(record)).dump_python(record, mode="json")


def decode(cls: type[T], payload: bytes | str) -> T:
    """Parse and validate a payload into ``cls``; any failure becomes one ``RecordError``."""
    try:
        return _adapter(cls).validate_json(payload)
    except ValidationError as exc:
        raise RecordError(cls.__name__, _explain(exc), payload) from None
    except (ValueError, TypeError) as exc:  # e.g. from __post_init__
        raise RecordError(cls.__name__, str(exc), payload) from None


def _explain(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors:
        if error["loc"][:1] == ("schema",) and error["type"] == "literal_error":
            return f"unknown schema version (supported: {SCHEMA_VERSION})"
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
