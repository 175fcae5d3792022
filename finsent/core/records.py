"""Typed records that travel between stages, each with a schema version and a JSON form.

Decoding an unknown version or a malformed payload raises ``RecordError``; stages route it to the
dead-letter topic with the raw payload, so nothing is lost. Decoding also refuses what a hostile
or broken producer can put on a topic and what would only fail later, deep in a stage or the
store: a tombstone, NaN and infinities, times outside ``EARLIEST``..``LATEST``, counts a detector
cannot sum over, and ids and keys longer than their store columns.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

from finsent.core.vocabulary import AlertState, Sentiment, Severity

SCHEMA_VERSION = 1

T = TypeVar("T")

# What a decoded record may hold. Times: window arithmetic near year 1 or 9999 overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# Stories in one window: the detector's binomial tail sums over them (a million: under 1 s).
MAX_WINDOW_STORIES = 1_000_000
MAX_VERSION = 2**31 - 1  # the store's integer column
# Lengths of the store's columns (finsent.runtime.store.schema) that ids and keys land in.
MAX_ID_CHARS = 64
MAX_KEY_CHARS = 200  # a series key: "source:" + source, "topic:" + topic, "ticker:" + ticker
MAX_NAME_CHARS = 100  # a source, topic, model version or rule name
MAX_TICKER_CHARS = 32

# Floats in the JSON form must be finite: NaN and Infinity are refused.
_FINITE = ConfigDict(allow_inf_nan=False)


def _in_range(value: datetime) -> datetime:
    # Naive times pass here and are refused by the record's ``__post_init__``.
    if value.tzinfo is not None and not EARLIEST <= value < LATEST:
        raise ValueError(f"time {value.isoformat()} outside {EARLIEST.year}..{LATEST.year}")
    return value


Timestamp = Annotated[datetime, AfterValidator(_in_range)]
Id = Annotated[str, Field(max_length=MAX_ID_CHARS)]
SeriesKey = Annotated[str, Field(max_length=MAX_KEY_CHARS)]
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
Ticker = Annotated[str, Field(max_length=MAX_TICKER_CHARS)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Novelty = Annotated[float, Field(ge=0.0, le=100.0)]
Stories = Annotated[int, Field(ge=0, le=MAX_WINDOW_STORIES)]
WeightedStories = Annotated[float, Field(ge=0.0, le=MAX_WINDOW_STORIES)]
Version = Annotated[int, Field(ge=0, le=MAX_VERSION)]


class RecordError(ValueError):
    """A payload that cannot become a record: malformed JSON, a missing field, an unknown version."""

    def __init__(self, record_type: str, reason: str, payload: bytes | str | None = b"") -> None:
        super().__init__(f"cannot decode {record_type}: {reason}")
        self.record_type = record_type
        self.reason = reason
        if payload is None:
            payload = b""
        self.payload = payload if isinstance(payload, bytes) else payload.encode("utf-8", "replace")


def utc(value: datetime) -> datetime:
    """The same instant in UTC; naive times are refused because their zone is unknown."""
    if value.tzinfo is UTC:  # most decoded times: nothing to convert
        return value
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
    __pydantic_config__ = _FINITE

    schema: Literal[1] = 1
    id: Id
    source: Name
    title: str
    published_at: Timestamp
    fetched_at: Timestamp
    url: str = ""
    body: str = ""
    tickers: tuple[Ticker, ...] = ()
    language: str = "en"
    time_inferred: bool = False  # no publish time in the source: fetch time stands in
    novelty: Novelty = 100.0  # 100 for a first story, less for its repeats
    chain_id: Id = ""
    # Per ticker: 1.0 when the title names it, lower when only the body does.
    ticker_relevance: dict[str, float] = field(default_factory=dict)
    # Name slugs ("silicon-valley-bank") of companies the story names that have no ticker.
    companies: tuple[Name, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or not self.title.strip():
            raise ValueError("a NewsItem needs an id and a non-empty title")
        _normalize_times(self, "published_at", "fetched_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntitySentiment:
    """One company's own sentiment in a story that names several (``finsent.model.
    entity_sentiment``): "Nvidia surges as Intel sinks" is not the same news for both."""

    __pydantic_config__ = _FINITE

    sentiment: Sentiment
    score: Annotated[float, Field(ge=-1.0, le=1.0)]  # P(pos) - P(neg) of its own clauses
    confidence: Share


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredItem:
    __pydantic_config__ = _FINITE

    schema: Literal[1] = 1
    item: NewsItem
    topic: Name
    topic_probs: dict[str, float] = field(default_factory=dict)
    sentiment: Sentiment
    score: float  # P(pos) - P(neg), in [-1, 1]
    confidence: Share
    top_tokens: tuple[str, ...] = ()  # the words that drove the prediction
    model_version: Name
    scored_at: Timestamp
    # Per tagged ticker, its own sentiment where the title names several companies and they
    # may differ; a ticker not here takes the story's. Absent from records scored before it.
    entities: dict[Ticker, EntitySentiment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not -1.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} outside [-1, 1]")
        _normalize_times(self, "scored_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesPoint:
    """What one story contributes to one series' windows: the aggregator's input unit."""

    __pydantic_config__ = _FINITE

    id: Id
    published_at: Timestamp
    score: Annotated[float, Field(ge=-1.0, le=1.0)]
    confidence: Share
    sentiment: Sentiment
    novelty: Novelty = 100.0
    title: str = ""
    source: Name = ""
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

    __pydantic_config__ = _FINITE

    schema: Literal[1] = 1
    key: SeriesKey
    point: SeriesPoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline:
    __pydantic_config__ = _FINITE

    id: str
    title: str
    score: float
    source: str = ""
    url: str = ""
    top_tokens: tuple[str, ...] = ()
    novelty: Novelty = 100.0  # 100 for a first story, less for its repeats
    sentiment: str = ""  # the story's label, where the record knows it


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowStat:
    __pydantic_config__ = _FINITE

    schema: Literal[1] = 1
    key: SeriesKey  # "overall", "topic:Earnings", "ticker:AAPL", "source:wire"
    window_start: Timestamp
    window_end: Timestamp
    count: Stories
    weighted_count: WeightedStories  # novelty-weighted: syndicated repeats count less
    mean_score: float
    weighted_mean_score: float  # confidence-weighted
    neg_share: Share
    pos_share: Share
    weighted_neg_share: Share | None = None  # novelty-weighted; None in records before it
    top_headlines: tuple[Headline, ...] = ()
    # The window's negative stories, most novel first (then the most negative): what an alert
    # on the series shows as its evidence.
    evidence: tuple[Headline, ...] = ()
    # 0: a running update of an open window; 1: the window closed; > 1: late news restated it
    version: Version = 1
    final: bool = True  # False only for running updates; alerting reads final windows
    emitted_at: Timestamp

    def __post_init__(self) -> None:
        _normalize_times(self, "window_start", "window_end", "emitted_at")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must follow window_start")


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    __pydantic_config__ = _FINITE

    schema: Literal[1] = 1
    id: Id  # stable across the alert's lifecycle events
    key: SeriesKey
    state: AlertState
    severity: Severity
    rule: Name
    window_start: Timestamp
    window_end: Timestamp
    neg_share: Share
    baseline_mean: float
    baseline_std: float
    zscore: float
    count: Stories
    # Novelty-weighted evidence and the score baseline; None in records from before them.
    weighted_neg_share: Share | None = None
    weighted_count: WeightedStories | None = None
    mean_score: float | None = None
    baseline_score: float | None = None
    headlines: tuple[Headline, ...] = ()
    started_at: Timestamp  # event time of the window that fired it
    updated_at: Timestamp  # event time of the window behind this event
    message: str = ""

    def __post_init__(self) -> None:
        _normalize_times(self, "window_start", "window_end", "started_at", "updated_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    __pydantic_config__ = _FINITE

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


def headline_jsonable(headline: Headline) -> dict[str, Any]:
    """``to_jsonable(headline)``, built field by field: every stored window carries a few, and
    pydantic's general path was a twentieth of the aggregator's time."""
    return {
        "id": headline.id,
        "title": headline.title,
        "score": headline.score,
        "source": headline.source,
        "url": headline.url,
        "top_tokens": list(headline.top_tokens),
        "novelty": headline.novelty,
        "sentiment": headline.sentiment,
    }


def decode(cls: type[T], payload: bytes | str | None) -> T:
    """Parse and validate a payload into ``cls``; any failure becomes one ``RecordError``.

    ``None`` is a Kafka tombstone (a record with no value): refused like any bad payload."""
    if payload is None:
        raise RecordError(cls.__name__, "no value (a tombstone)", b"")
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
