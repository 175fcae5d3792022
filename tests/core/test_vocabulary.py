"""The shared words: one order for each, and the records typed by them."""

from __future__ import annotations

from typing import get_type_hints

from finsent.core import records
from finsent.core.vocabulary import (
    ALERT_STATES,
    SENTIMENTS,
    SEVERITIES,
    STATE_ORDER,
    AlertState,
    Sentiment,
    Severity,
)


def test_sentiments_are_in_the_models_output_order() -> None:
    # Index 0 is negative: the sentiment head and the score P(pos) − P(neg) depend on it.
    assert SENTIMENTS == ("negative", "neutral", "positive")


def test_alert_states_are_in_lifecycle_order() -> None:
    assert ALERT_STATES == ("pending", "firing", "resolved")
    assert sorted(["resolved", "pending", "firing"], key=STATE_ORDER.__getitem__) == list(
        ALERT_STATES
    )
    assert dict(STATE_ORDER) == {"pending": 0, "firing": 1, "resolved": 2}


def test_severities_mildest_first() -> None:
    assert SEVERITIES == ("warning", "critical")


def test_records_are_typed_by_the_vocabulary() -> None:
    scored = get_type_hints(records.ScoredItem)
    alert = get_type_hints(records.Alert)
    assert scored["sentiment"] == Sentiment
    assert alert["state"] == AlertState
    assert alert["severity"] == Severity
