"""The keyword topics of the lexicon scorer, over the 20 analyst topics."""

from __future__ import annotations

from finsent.model.topics import FALLBACK_TOPIC, TOPICS, keyword_topic


def test_keyword_topics() -> None:
    assert keyword_topic("Fed signals rate hike as inflation persists")[0] == "Fed | Central Banks"
    assert keyword_topic("Crude oil jumps after OPEC cut")[0] == "Energy | Oil"
    topic, probs = keyword_topic("Nothing to see")
    assert topic == FALLBACK_TOPIC and probs == {FALLBACK_TOPIC: 1.0}
    assert len(TOPICS) == 20
