"""A correction from the dashboard's form: what it stores, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from finsent.dashboard.corrections import (
    KEEP,
    SENTIMENT_CHOICES,
    TOPIC_CHOICES,
    dashboard_correction,
    label_summary,
    save_correction,
)
from finsent.model.corrections import CorrectionError
from finsent.model.topics import TOPICS
from finsent.runtime.store import Store
from finsent.runtime.store.labels import current_labels

NOW = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
STORY = {
    "id": "item-7",
    "title": "Acme cut to sell on loss warning",
    "sentiment": "positive",
    "topic": "Markets",
    "model_version": "finsent-attn-1+ab12/onnx-int8",
    "confidence": 0.55,
}


def correction(**fields: Any) -> Any:
    values = {"sentiment": KEEP, "topic": KEEP, "by": "dana", "note": "", "now": NOW, **fields}
    return dashboard_correction(STORY, **values)


def test_the_choices_are_keep_then_the_vocabularies() -> None:
    assert SENTIMENT_CHOICES == ("keep", "negative", "neutral", "positive")
    assert TOPIC_CHOICES[0] == "keep"
    assert TOPIC_CHOICES[1:] == TOPICS


def test_a_correction_records_the_stored_call_and_the_analyst() -> None:
    made = correction(sentiment="negative", by="  dana ", note=" a profit warning ")

    assert made.row() == {
        "story_id": "item-7",
        "text": "Acme cut to sell on loss warning",
        "sentiment": "negative",
        "topic": None,  # "keep": this correction leaves the topic as it was
        "by": "dana",
        "at": NOW,
        "note": "a profit warning",
        "predicted_sentiment": "positive",
        "predicted_topic": "Markets",
        "model_version": "finsent-attn-1+ab12/onnx-int8",
        "origin": "dashboard",
    }
    assert correction(topic="Earnings").row()["topic"] == "Earnings"
    # The model's own call confirms it: a label like any other.
    assert correction(sentiment="positive").sentiment == "positive"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sentiment": "negative", "by": "  "}, "Say who you are: fill in your name."),
        ({}, "Nothing to save: set the sentiment, the topic, or both."),
        ({"sentiment": "bullish-ish"}, "sentiment 'bullish-ish' is not one of"),
        ({"topic": "Sports"}, "topic 'Sports' is not one of the 20 analyst topics"),
        ({"sentiment": "negative", "note": "x" * 2001}, "story item-7: note over 2000 characters"),
    ],
)
def test_a_wrong_field_is_one_clear_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(CorrectionError) as caught:
        correction(**fields)
    assert str(caught.value).startswith(message)


def test_saved_corrections_are_all_kept_and_the_latest_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    save_correction(url, correction(sentiment="negative"))
    save_correction(url, correction(topic="Earnings", by="lee", now=NOW + timedelta(hours=1)))

    store = Store(url)
    history = store.label_history(["item-7"])
    store.close()
    assert [(r["sentiment"], r["topic"], r["by"]) for r in history] == [
        ("negative", None, "dana"),
        (None, "Earnings", "lee"),
    ]
    current = current_labels(history)["item-7"]
    assert (current["sentiment"], current["topic"], current["corrections"]) == (
        "negative",
        "Earnings",
        2,
    )
    assert label_summary(current) == (
        "Corrected 2 times; now negative, Earnings (lee, 2025-03-03 10:30 UTC)."
    )
    assert label_summary(current, "Asia/Tokyo").endswith("(lee, 2025-03-03 19:30 Asia/Tokyo).")
    assert label_summary(None) == "Not corrected yet."
