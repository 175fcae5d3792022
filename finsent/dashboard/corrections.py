"""An analyst's correction from a dashboard form: checked, made into a ``labels`` row, stored.

No Streamlit here (``correction_form`` draws the form): what the form's fields mean and what
is written, testable on its own. The model's call and version come from the stored scored
row, never from the page, so a label records what the model really said.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.corrections import (
    Correction,
    CorrectionError,
    normalize_sentiment,
    normalize_topic,
)
from finsent.model.topics import TOPICS
from finsent.runtime.store import Store

KEEP = "keep"  # the form's choice that leaves a task as the model (or the last analyst) set it
SENTIMENT_CHOICES = (KEEP, *SENTIMENTS)
TOPIC_CHOICES = (KEEP, *TOPICS)


def dashboard_correction(
    story: Mapping[str, Any],
    *,
    sentiment: str,
    topic: str,
    by: str,
    note: str,
    now: datetime,
) -> Correction:
    """The correction a form asks for of a stored story (a ``queries.STORY_COLUMNS`` row);
    ``CorrectionError`` with a message for the page when a field is wrong.

    Choosing the model's own call is no mistake: it confirms the call, which is a label too."""
    if not by.strip():
        raise CorrectionError("Say who you are: fill in your name.")
    chosen_sentiment = normalize_sentiment(None if sentiment == KEEP else sentiment)
    chosen_topic = normalize_topic(None if topic == KEEP else topic)
    if chosen_sentiment is None and chosen_topic is None:
        raise CorrectionError("Nothing to save: set the sentiment, the topic, or both.")
    return Correction(
        story_id=str(story["id"]),
        text=str(story["title"]),
        sentiment=chosen_sentiment,
        topic=chosen_topic,
        by=by.strip(),
        at=now,
        note=note.strip(),
        predicted_sentiment=story.get("sentiment"),
        predicted_topic=story.get("topic"),
        model_version=story.get("model_version"),
        origin="dashboard",
    )


def save_correction(url: str, correction: Correction) -> None:
    """Append the correction to the store's ``labels`` (every correction is kept)."""
    store = Store(url)
    try:
        store.add_labels([correction.row()])
    finally:
        store.close()


def label_summary(current: Mapping[str, Any] | None, tz: str = "UTC") -> str:
    """A story's labels now, in a line: "Corrected 2 times; now negative, Earnings (dana,
    2025-03-03 09:00 UTC)", its time in ``tz``; or that it has not been corrected."""
    if not current:
        return "Not corrected yet."
    count = int(current.get("corrections", 1))
    times = "once" if count == 1 else f"{count} times"
    labels = [str(current[task]) for task in ("sentiment", "topic") if current.get(task)]
    at = current.get("at")
    when = (
        f", {at.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M} {tz}" if isinstance(at, datetime) else ""
    )
    return f"Corrected {times}; now {', '.join(labels)} ({current.get('by', '')}{when})."
