from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from finsent.core.records import NewsItem, ScoredItem
from finsent.stream.scoring import score_batch

T0 = datetime(2026, 1, 5, tzinfo=UTC)


class Fragile:
    """Scores anything except a title containing 'poison', which fails the whole call."""

    version = "fragile-1"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        self.calls += 1
        if any("poison" in item.title for item in items):
            raise RuntimeError("tokenizer exploded")
        return [
            ScoredItem(
                item=item,
                topic="Markets",
                sentiment="neutral",
                score=0.0,
                confidence=0.5,
                model_version=self.version,
                scored_at=T0,
            )
            for item in items
        ]


def news(title: str) -> NewsItem:
    return NewsItem(id=title, source="s", title=title, published_at=T0, fetched_at=T0)


def test_one_bad_story_does_not_sink_its_batch() -> None:
    scorer = Fragile()
    items = [news("fine 1"), news("poison pill"), news("fine 2")]
    scored, failed = score_batch(scorer, items)
    assert [s.item.id for s in scored] == ["fine 1", "fine 2"]
    assert [(item.id, reason) for item, reason in failed] == [
        ("poison pill", "scorer failed: RuntimeError: tokenizer exploded")
    ]
    assert scorer.calls == 1 + len(items)  # the batch, then one call per story


def test_healthy_batch_is_scored_in_one_call() -> None:
    scorer = Fragile()
    scored, failed = score_batch(scorer, [news("a"), news("b")])
    assert len(scored) == 2 and failed == [] and scorer.calls == 1
