"""Event-time tumbling windows per series key. Pure: no Kafka, and "now" is passed in.

A scored story feeds several series: ``overall``, ``topic:<name>``, ``ticker:<SYM>`` and
``source:<name>``. The watermark is the largest event time seen minus the grace period; a window
closes once its end is at or below the watermark. A story for a window that has closed is late:
it is returned to the caller (for the late/DLQ path), never silently dropped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from finsent.records import Headline, ScoredItem, WindowStat

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def series_keys(scored: ScoredItem) -> list[str]:
    keys = ["overall", f"topic:{scored.topic}", f"source:{scored.item.source}"]
    keys.extend(f"ticker:{t}" for t in dict.fromkeys(scored.item.tickers))
    return keys


def window_start(ts: datetime, size: timedelta) -> datetime:
    return EPOCH + ((ts - EPOCH) // size) * size


@dataclass
class Accumulator:
    count: int = 0
    weighted_count: float = 0.0
    score_sum: float = 0.0
    confidence_sum: float = 0.0
    weighted_score_sum: float = 0.0
    negative: int = 0
    positive: int = 0
    # (|score|, id, headline) min-heap of the strongest stories
    top: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, s: ScoredItem, top_n: int) -> None:
        self.count += 1
        self.weighted_count += s.item.novelty / 100.0
        self.score_sum += s.score
        self.confidence_sum += s.confidence
        self.weighted_score_sum += s.confidence * s.score
        self.negative += s.sentiment == "negative"
        self.positive += s.sentiment == "positive"
        entry = (
            abs(s.score),
            s.item.id,
            {
                "id": s.item.id,
                "title": s.item.title,
                "score": s.score,
                "source": s.item.source,
                "url": s.item.url,
                "top_tokens": list(s.top_tokens),
            },
        )
        if len(self.top) < top_n:
            heapq.heappush(self.top, entry)
        elif entry[:2] > self.top[0][:2]:
            heapq.heapreplace(self.top, entry)

    def result(self, key: str, start: datetime, size: timedelta, now: datetime) -> WindowStat:
        n = self.count
        ranked = sorted(self.top, key=lambda e: (-e[0], e[1]))
        return WindowStat(
            key=key,
            window_start=start,
            window_end=start + size,
            count=n,
            weighted_count=round(self.weighted_count, 6),
            mean_score=round(self.score_sum / n, 6),
            weighted_mean_score=round(self.weighted_score_sum / self.confidence_sum, 6)
            if self.confidence_sum
            else 0.0,
            neg_share=round(self.negative / n, 6),
            pos_share=round(self.positive / n, 6),
            top_headlines=tuple(
                Headline(**{**h, "top_tokens": tuple(h["top_tokens"])}) for *_, h in ranked
            ),
            emitted_at=now,
        )

    def to_state(self) -> dict[str, Any]:
        return {**self.__dict__, "top": [list(e) for e in self.top]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Accumulator:
        acc = cls(**{k: v for k, v in state.items() if k != "top"})
        acc.top = [tuple(e) for e in state["top"]]  # type: ignore[misc]
        heapq.heapify(acc.top)
        return acc


@dataclass
class Output:
    closed: list[WindowStat] = field(default_factory=list)
    late: list[ScoredItem] = field(default_factory=list)
    duplicate: bool = False  # the story was already counted (at-least-once redelivery)


class TumblingWindows:
    """Open windows for every key, closed by the watermark."""

    CLOCK_KEY = "__clock__"
    SEEN_KEY = "__seen__"

    def __init__(
        self,
        size: timedelta,
        grace: timedelta,
        top_n: int = 3,
        idle_close: timedelta | None = None,
    ) -> None:
        if size <= timedelta(0) or grace < timedelta(0):
            raise ValueError("window size must be positive and grace non-negative")
        self.size = size
        self.grace = grace
        self.top_n = top_n
        self.idle_close = idle_close
        self.open: dict[tuple[str, datetime], Accumulator] = {}
        self.max_event: datetime | None = None
        self.closed_until: datetime = EPOCH  # every window ending at or before this has closed
        self.last_arrival: datetime | None = None  # wall clock of the last story
        self.seen: dict[datetime, set[str]] = {}  # story ids per open window start
        self.dirty: set[tuple[str, datetime]] = set()
        self.removed: set[tuple[str, datetime]] = set()

    @property
    def watermark(self) -> datetime | None:
        return None if self.max_event is None else self.max_event - self.grace

    def add(self, scored: ScoredItem, now: datetime) -> Output:
        out = Output()
        ts = scored.item.published_at
        start = window_start(ts, self.size)
        if start + self.size <= self.closed_until:
            out.late.append(scored)
            return out
        ids = self.seen.setdefault(start, set())
        if scored.item.id in ids:
            out.duplicate = True
            return out
        ids.add(scored.item.id)
        self.dirty.add((self.SEEN_KEY, start))
        for key in series_keys(scored):
            slot = (key, start)
            acc = self.open.get(slot)
            if acc is None:
                acc = self.open[slot] = Accumulator()
            acc.add(scored, self.top_n)
            self.dirty.add(slot)
        self.last_arrival = now
        if self.max_event is None or ts > self.max_event:
            self.max_event = ts
            out.closed.extend(self._close_until(ts - self.grace, now))
        return out

    def advance(self, now: datetime) -> list[WindowStat]:
        """Close windows of quiet periods: while no story arrives, event time follows the wall clock."""
        if self.idle_close is None or self.last_arrival is None or self.max_event is None:
            return []
        idle = now - self.last_arrival
        if idle < self.idle_close:
            return []
        return self._close_until(self.max_event + idle - self.grace, now)

    def _close_until(self, watermark: datetime, now: datetime) -> list[WindowStat]:
        boundary = window_start(watermark, self.size)  # windows ending at or before it close
        if boundary <= self.closed_until:
            return []
        self.closed_until = boundary
        ready = sorted((start, key) for key, start in self.open if start + self.size <= boundary)
        for start in [s for s in self.seen if s + self.size <= boundary]:
            del self.seen[start]
            self.dirty.discard((self.SEEN_KEY, start))
            self.removed.add((self.SEEN_KEY, start))
        closed = []
        for start, key in ready:
            acc = self.open.pop((key, start))
            self.dirty.discard((key, start))
            self.removed.add((key, start))
            closed.append(acc.result(key, start, self.size, now))
        return closed

    # -- persistence: the aggregator stores this with its offsets -------------

    def take_changes(self) -> tuple[dict[str, Any], set[str]]:
        """State rows to upsert and to delete since the last call."""
        put = {
            _slot_id(slot): sorted(self.seen[slot[1]])
            if slot[0] == self.SEEN_KEY
            else self.open[slot].to_state()
            for slot in self.dirty
        }
        put[self.CLOCK_KEY] = {
            "max_event": self.max_event.isoformat() if self.max_event else None,
            "closed_until": self.closed_until.isoformat(),
            "last_arrival": self.last_arrival.isoformat() if self.last_arrival else None,
        }
        delete = {_slot_id(slot) for slot in self.removed}
        self.dirty.clear()
        self.removed.clear()
        return put, delete

    def restore(self, state: dict[str, Any]) -> None:
        clock = state.get(self.CLOCK_KEY)
        if clock:
            self.max_event = _parse(clock["max_event"])
            self.closed_until = _parse(clock["closed_until"]) or EPOCH
            self.last_arrival = _parse(clock["last_arrival"])
        for slot_id, value in state.items():
            if slot_id == self.CLOCK_KEY:
                continue
            key, start = _parse_slot(slot_id)
            if key == self.SEEN_KEY:
                self.seen[start] = set(value)
            else:
                self.open[(key, start)] = Accumulator.from_state(value)


def _slot_id(slot: tuple[str, datetime]) -> str:
    return f"{slot[1].isoformat()}|{slot[0]}"


def _parse_slot(slot_id: str) -> tuple[str, datetime]:
    start, key = slot_id.split("|", 1)
    return key, datetime.fromisoformat(start)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
