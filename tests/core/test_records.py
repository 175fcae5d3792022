from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import (
    T0,
    alert,
    headline,
    keyed_point,
    news_item,
    scored_item,
    window_stat,
)

from finsent.core.records import (
    Alert,
    DeadLetter,
    EntitySentiment,
    Headline,
    KeyedPoint,
    NewsItem,
    RecordError,
    ScoredItem,
    WindowStat,
    decode,
    encode,
    headline_jsonable,
    stable_id,
    to_jsonable,
)

# What the lexicon scorer adds to a story: topic probabilities and the words behind the score.
LEXICON = {
    "topic_probs": {"Financials": 0.9, "Markets": 0.1},
    "top_tokens": ("fall",),
    "model_version": "lexicon-lm-1",
}


@pytest.mark.parametrize(
    "record",
    [
        news_item(),
        scored_item(**LEXICON),
        scored_item(
            entities={"UBS": EntitySentiment(sentiment="neutral", score=0.1, confidence=0.7)}
        ),
        window_stat(
            weighted_count=2.5,
            mean_score=-0.4,
            weighted_mean_score=-0.5,
            neg_share=2 / 3,
            top_headlines=(headline(top_tokens=("fall",)),),
            emitted_at=T0,
        ),
        alert(zscore=14.0, updated_at=T0),
        DeadLetter.of(stage="s", reason="r", payload=b"\xff", at=T0),
    ],
    ids=lambda r: type(r).__name__,
)
def test_round_trip_is_exact_and_versioned(record) -> None:
    payload = encode(record)
    assert json.loads(payload)["schema"] == 1
    assert decode(type(record), payload) == record


def test_a_story_encoded_before_company_names_existed_still_decodes() -> None:
    payload = json.loads(encode(news_item(companies=("pear-therapeutics",))))
    assert payload["companies"] == ["pear-therapeutics"]
    del payload["companies"]
    assert decode(NewsItem, json.dumps(payload).encode()).companies == ()


def test_a_scored_story_from_before_per_company_sentiment_still_decodes() -> None:
    story = scored_item(**LEXICON)
    older = json.loads(encode(story))
    del older["entities"]
    assert decode(ScoredItem, json.dumps(older)) == story
    assert story.entities == {}


def test_a_company_score_outside_the_range_is_refused() -> None:
    payload = json.loads(encode(scored_item()))
    payload["entities"] = {"UBS": {"sentiment": "neutral", "score": 1.5, "confidence": 0.7}}
    with pytest.raises(RecordError, match="entities"):
        decode(ScoredItem, json.dumps(payload))


def test_times_are_normalized_to_utc() -> None:
    local = datetime(2026, 3, 10, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    item = news_item(published_at=local)
    assert item.published_at == T0
    assert item.published_at.tzinfo == UTC
    assert b'"published_at":"2026-03-10T14:30:00Z"' in encode(item)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        news_item(published_at=datetime(2026, 3, 10, 14, 30))


def test_records_are_frozen() -> None:
    item = news_item()
    with pytest.raises(AttributeError):
        item.title = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[]", "object"),
        (b"", "EOF"),
        (json.dumps({"schema": 1, "id": "x"}).encode(), "Field required"),
        (encode(news_item()).replace(b'"schema":1', b'"schema":2'), "unknown schema version"),
        (encode(news_item()).replace(b'"schema":1,', b""), None),  # a missing version reads as v1
        (encode(news_item()).replace(b"Z", b""), "no time zone"),
        (encode(news_item()).replace(b'"Bank shares fall"', b'"   "'), "non-empty title"),
        (
            encode(scored_item(**LEXICON)).replace(b'"score":-0.8', b'"score":7.0'),
            "outside [-1, 1]",
        ),
        (encode(scored_item(**LEXICON)).replace(b'"negative"', b'"bearish"'), "sentiment"),
    ],
)
def test_bad_payloads_raise_one_typed_error(payload: bytes, reason: str | None) -> None:
    record_type = ScoredItem if b"topic" in payload else NewsItem
    if reason is None:
        assert decode(record_type, payload).id == "n1"
        return
    with pytest.raises(RecordError) as info:
        decode(record_type, payload)
    assert reason in info.value.reason
    assert info.value.payload == payload
    assert info.value.record_type == record_type.__name__


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_error(payload: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode(NewsItem, payload)


@given(
    st.dictionaries(
        st.sampled_from(["schema", "id", "title", "source", "published_at"]),
        st.none() | st.integers() | st.text(max_size=20),
    )
)
def test_arbitrary_objects_never_escape_as_another_error(obj: dict) -> None:
    with contextlib.suppress(RecordError):
        decode(NewsItem, json.dumps(obj))


def test_dead_letter_keeps_the_whole_payload() -> None:
    raw = b"\x00\xffnot utf-8" * 100
    letter = DeadLetter.of(
        stage="scorer", reason="bad", payload=raw, at=T0, source_topic="news.raw", offset=5
    )
    back = decode(DeadLetter, encode(letter))
    assert back.payload() == raw
    assert base64.b64decode(back.payload_b64) == raw
    assert len(back.excerpt) <= 500


def test_stable_id_prefers_url_then_content() -> None:
    assert stable_id("https://x/a", "T", "s") == stable_id("https://x/a", "Other", "t")
    assert stable_id("", "Bank  Shares fall", "Wire") == stable_id("", "bank shares FALL", "wire")
    assert stable_id("", "Bank shares fall", "wire") != stable_id("", "Bank shares rise", "wire")


def test_a_tombstone_is_a_typed_error() -> None:
    with pytest.raises(RecordError, match="no value") as info:
        decode(WindowStat, None)
    assert info.value.payload == b""


def with_field(record: object, path: str, raw: str) -> bytes:
    """The record's JSON with the field at ``path`` (dotted) set to the raw JSON text ``raw``:
    what a hostile producer can put on a topic, NaN and Infinity included."""
    obj = json.loads(encode(record))
    *parents, name = path.split(".")
    holder = obj
    for parent in parents:
        holder = holder[parent]
    marker = "__replaced__"
    holder[name] = marker
    return json.dumps(obj).replace(f'"{marker}"', raw).encode()


@pytest.mark.parametrize(
    ("record_type", "record", "path", "raw"),
    [
        (WindowStat, window_stat(), "mean_score", "NaN"),
        (WindowStat, window_stat(), "weighted_count", "Infinity"),
        (WindowStat, window_stat(), "weighted_count", "1e300"),  # hangs the binomial tail
        (WindowStat, window_stat(), "count", "100000000000000000000"),
        (WindowStat, window_stat(), "count", "-3"),
        (WindowStat, window_stat(), "neg_share", "-Infinity"),
        (WindowStat, window_stat(), "neg_share", "1.5"),
        (WindowStat, window_stat(), "version", "4294967296"),
        (WindowStat, window_stat(), "window_start", '"0001-01-01T00:00:00Z"'),
        (WindowStat, window_stat(), "window_end", '"9999-12-31T23:59:59Z"'),
        (WindowStat, window_stat(), "key", json.dumps("source:" + "x" * 300)),
        (ScoredItem, scored_item(), "confidence", "NaN"),
        (ScoredItem, scored_item(), "item.published_at", '"9999-12-31T00:00:00Z"'),
        (ScoredItem, scored_item(), "item.novelty", "1e308"),
        (ScoredItem, scored_item(), "item.id", json.dumps("i" * 65)),
        (ScoredItem, scored_item(), "item.source", json.dumps("s" * 101)),
        (ScoredItem, scored_item(), "item.tickers", json.dumps(["T" * 33])),
        (ScoredItem, scored_item(), "topic", json.dumps("t" * 101)),
        (ScoredItem, scored_item(**LEXICON), "topic_probs.Markets", "NaN"),
        (KeyedPoint, keyed_point(), "point.score", "NaN"),
        (KeyedPoint, keyed_point(), "key", json.dumps("k" * 201)),
        (Alert, alert(), "zscore", "Infinity"),
        (Alert, alert(), "weighted_count", "1e300"),
        (Alert, alert(), "started_at", '"0001-01-01T00:00:00Z"'),
        (Alert, alert(), "id", json.dumps("a" * 65)),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_non_finite_out_of_range_and_overlong_fields_are_refused(
    record_type: type, record: object, path: str, raw: str
) -> None:
    payload = with_field(record, path, raw)
    with pytest.raises(RecordError) as info:
        decode(record_type, payload)
    assert path.split(".")[-1] in info.value.reason or "payload" in info.value.reason


@pytest.mark.parametrize(
    ("record_type", "record", "path", "raw"),
    [
        (WindowStat, window_stat(), "weighted_count", "0.0"),
        (WindowStat, window_stat(), "neg_share", "1.0"),
        (WindowStat, window_stat(), "window_start", '"1990-01-01T00:00:00Z"'),
        (ScoredItem, scored_item(), "item.id", json.dumps("i" * 64)),
        (ScoredItem, scored_item(), "item.novelty", "0.0"),
        (KeyedPoint, keyed_point(), "key", json.dumps("k" * 200)),
    ],
)
def test_values_at_the_bounds_decode(
    record_type: type, record: object, path: str, raw: str
) -> None:
    decode(record_type, with_field(record, path, raw))


@given(
    st.builds(
        Headline,
        id=st.text(max_size=8),
        title=st.text(max_size=40),
        score=st.floats(-1, 1),
        source=st.text(max_size=8),
        url=st.text(max_size=20),
        top_tokens=st.tuples(st.text(max_size=6), st.text(max_size=6)),
        novelty=st.floats(0, 100),
        sentiment=st.sampled_from(["", "negative", "neutral", "positive"]),
    )
)
def test_the_fast_headline_form_is_the_records_own(item: Headline) -> None:
    assert headline_jsonable(item) == to_jsonable(item)
    assert json.dumps(headline_jsonable(item)) == json.dumps(to_jsonable(item))  # key order too
