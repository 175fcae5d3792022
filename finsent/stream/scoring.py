"""The scorer stage's logic: micro-batches of ``news.raw`` → ``Scorer`` → ``news.scored``.

At-least-once: the runner commits the offsets only after the scored batch is acknowledged by the
broker, pipelined one batch deep (``Checkpoint.KAFKA``, see ``finsent.runtime.runner``); a
redelivered story gets the same id, and the router passes each id on once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from finsent.core.records import NewsItem, ScoredItem, encode
from finsent.model.entity_sentiment import EntityScorer
from finsent.model.registry import FollowingScorer
from finsent.model.scorer import Scorer
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import Message, Output, Partition

log = logging.getLogger(__name__)
STAGE = "scorer"


def score_batch(
    scorer: Scorer, items: list[NewsItem]
) -> tuple[list[ScoredItem], list[tuple[NewsItem, str]]]:
    """Score a batch; if the batch fails, score one by one so one bad story cannot sink the rest."""
    try:
        return scorer.score(items), []
    except Exception:  # noqa: BLE001 - any scorer failure is isolated per item below
        log.exception("batch of %d failed; retrying item by item", len(items))
    scored, failed = [], []
    for item in items:
        try:
            scored.extend(scorer.score([item]))
        except Exception as exc:  # noqa: BLE001
            failed.append((item, f"scorer failed: {type(exc).__name__}: {exc}"))
    return scored, failed


class Scoring:
    """Scores each batch of stories; a story the scorer fails on becomes a dead letter.

    With ``entities``, a story whose title names several tagged companies also gets each
    one's own sentiment (``ScoredItem.entities``)."""

    def __init__(
        self,
        scorer: Scorer,
        entities: EntityScorer | None = None,
        entities_for: Callable[[Scorer], EntityScorer | None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.entities = entities
        self.entities_for = entities_for  # rebuilds ``entities`` over a newly loaded model

    # A scorer that follows the model registry swaps models between batches (the runner
    # commits the batch in flight first; see ``Reloadable``).
    def reload_due(self) -> bool:
        return isinstance(self.scorer, FollowingScorer) and self.scorer.reload_due()

    def reload(self) -> None:
        if not isinstance(self.scorer, FollowingScorer) or not self.scorer.reload():
            return
        metrics.MODEL_SWAPS.labels(STAGE).inc()
        if self.entities_for is not None:
            self.entities = self.entities_for(self.scorer.inner)

    def assigned(self, partitions: list[Partition]) -> None:
        pass  # stateless

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def process(
        self, batch: Sequence[Message[NewsItem]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], None]:
        if not batch:
            return [], None
        items = [message.value for message in batch]
        started = time.perf_counter()
        scored, failed = score_batch(self.scorer, items)
        if self.entities is not None:
            try:
                scored = self.entities.attach(scored)
            except Exception:  # noqa: BLE001 - an extra: the stories keep the headline's
                log.exception("per-company sentiment failed for a batch of %d", len(scored))
        metrics.MODEL_SECONDS.labels(STAGE).observe(time.perf_counter() - started)
        where = {id(message.value): message for message in batch}
        for item, reason in failed:
            dead.send(reason, encode(item), where.get(id(item)))
        return [(s.item.id, s) for s in scored], None
