"""Event-time windows per series key. Pure: no Kafka, and "now" is passed in.

A story feeds several series (``overall``, ``topic:<name>``, ``ticker:<SYM>``, ``source:<name>``);
the router fans it out as one ``SeriesPoint`` per series. A ``WindowEngine`` owns the windows of
the keys it is given (in the aggregator: one engine per input partition, so each partition has its
own watermark).

Time rules:
- the watermark is the largest event time seen minus the grace period;
- a window closes once its end is at or below the watermark: it is emitted once, final, version 1;
- a story for a closed window within the allowed lateness restates it (version + 1);
- a story later than that is returned as late (for the late/DLQ path), never dropped silently;
- with ``idle_close``, event time follows the wall clock while the input is quiet, so the
  windows of quiet periods close too. Quiet means caught up with the input (no lag) and no
  story since, as this process saw it: time the pipeline was down, or spent reading a
  backlog, is not quiet news, so a restart never closes the backlog's windows unread.

Closing is checked after every story, never per batch, so results do not depend on how the
input was batched: a live run and a backtest replay give the same final windows.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from finsent.core.durations import EPOCH, WindowSpec, window_start
from finsent.core.records import Headline, ScoredItem, SeriesPoint, WindowStat

__all__ = ["EPOCH", "WindowSpec", "window_start"]  # the window shape, from core


def series_keys(scored: ScoredItem) -> list[str]:
    keys = ["overall", f"topic:{scored.topic}", f"source:{scored.item.source}"]
    keys.extend(f"ticker:{t}" for t in dict.fromkeys(scored.item.tickers))
    keys.extend(f"company:{c}" for c in dict.fromkeys(scored.item.companies))
    return keys


def fan_out(scored: ScoredItem) -> list[tuple[str, SeriesPoint]]:
    """The story's contribution to each of its series; a ticker with its own sentiment in the
    story (``ScoredItem.entities``) gets that, not the headline's. A ticker named only in the
    body counts as that part of a story (its relevance weighs its novelty): a story about
    something else that mentions a company in passing is not news about the company."""
    point = SeriesPoint.of(scored)
    relevance = scored.item.ticker_relevance
    own = {}
    for ticker in dict.fromkeys(scored.item.tickers):
        mine = point
        if ticker in scored.entities:
            e = scored.entities[ticker]
            mine = replace(mine, score=e.score, confidence=e.confidence, sentiment=e.sentiment)
        weight = min(max(relevance.get(ticker, 1.0), 0.0), 1.0)
        if weight < 1.0:
            mine = replace(mine, novelty=round(mine.novelty * weight, 6))
        own[f"ticker:{ticker}"] = mine
    return [(key, own.get(key, point)) for key in series_keys(scored)]


@dataclass
class Accumulator:
    count: int = 0
    weighted_count: float = 0.0
    score_sum: float = 0.0
    confidence_sum: float = 0.0
    weighted_score_sum: float = 0.0
    negative: int = 0
    positive: int = 0
    weighted_negative: float = 0.0
    # (|score|, id, headline) min-heap of the strongest stories
    top: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    # (novelty, -score, id, headline) min-heap of the most novel, most negative bad stories
    evidence: list[tuple[float, float, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, p: SeriesPoint, top_n: int) -> None:
        weight = p.novelty / 100.0
        self.count += 1
        self.weighted_count += weight
        self.score_sum += p.score
        self.confidence_sum += p.confidence
        self.weighted_score_sum += p.confidence * p.score
        if p.sentiment == "negative":
            self.negative += 1
            self.weighted_negative += weight
        elif p.sentiment == "positive":
            self.positive += 1
        strength = abs(p.score)
        if len(self.top) < top_n or (strength, p.id) > self.top[0][:2]:
            entry = (strength, p.id, _headline(p))
            if len(self.top) < top_n:
                heapq.heappush(self.top, entry)
            else:
                heapq.heapreplace(self.top, entry)
        if p.sentiment == "negative":
            rank = (p.novelty, -p.score, p.id)
            if len(self.evidence) < top_n or rank > self.evidence[0][:3]:
                evidence = (*rank, _headline(p))
                if len(self.evidence) < top_n:
                    heapq.heappush(self.evidence, evidence)
                else:
                    heapq.heapreplace(self.evidence, evidence)

    def result(
        self,
        key: str,
        start: datetime,
        end: datetime,
        now: datetime,
        version: int,
        final: bool,
    ) -> WindowStat:
        n = self.count
        ranked = sorted(self.top, key=lambda e: (-e[0], e[1]))
        evidence = sorted(self.evidence, key=lambda e: (-e[0], -e[1], e[2]))
        return WindowStat(
            key=key,
            window_start=start,
            window_end=end,
            count=n,
            weighted_count=round(self.weighted_count, 6),
            mean_score=round(self.score_sum / n, 6),
            weighted_mean_score=round(self.weighted_score_sum / self.confidence_sum, 6)
            if self.confidence_sum
            else 0.0,
            neg_share=round(self.negative / n, 6),
            pos_share=round(self.positive / n, 6),
            weighted_neg_share=round(self.weighted_negative / self.weighted_count, 6)
            if self.weighted_count
            else 0.0,
            top_headlines=tuple(_from_state(h) for *_, h in ranked),
            evidence=tuple(_from_state(h) for *_, h in evidence),
            version=version,
            final=final,
            emitted_at=now,
        )

    def to_state(self) -> dict[str, Any]:
        # A story is often among both the strongest and the evidence: its headline is saved
        # once (a window's state is rewritten with every batch that touches it).
        heads = {e[1]: e[2] for e in self.top}
        heads.update((e[2], e[3]) for e in self.evidence)
        return {
            **self.__dict__,
            "top": [e[:2] for e in self.top],
            "evidence": [e[:3] for e in self.evidence],
            "heads": heads,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Accumulator:
        acc = cls(**{k: v for k, v in state.items() if k not in ("top", "evidence", "heads")})
        heads = state.get("heads")
        if heads is None:  # saved before headlines were kept apart: each entry holds its own
            acc.top = [tuple(e) for e in state["top"]]
            # Saved before windows kept their evidence: the window shows none.
            acc.evidence = [tuple(e) for e in state.get("evidence", [])]
        else:
            acc.top = [(strength, id_, heads[id_]) for strength, id_ in state["top"]]
            acc.evidence = [(n, s, id_, heads[id_]) for n, s, id_ in state["evidence"]]
        heapq.heapify(acc.top)
        heapq.heapify(acc.evidence)
        return acc


def _headline(p: SeriesPoint) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "score": p.score,
        "source": p.source,
        "url": p.url,
        "top_tokens": list(p.top_tokens),
        "novelty": p.novelty,
        "sentiment": p.sentiment,
    }


def _from_state(headline: dict[str, Any]) -> Headline:
    return Headline(**{**headline, "top_tokens": tuple(headline["top_tokens"])})


SlotKey = tuple[str, datetime, datetime]  # (series key, start, end)


@dataclass
class Slot:
    acc: Accumulator = field(default_factory=Accumulator)
    version: int = 0  # 0 while open; 1 once closed; +1 per restatement
    ids: set[str] = field(default_factory=set)  # story ids counted, for redelivery dedup
    new_ids: list[str] = field(default_factory=list)  # counted since the last save
    id_chunks: int = 0  # id rows saved so far: ids are saved incrementally, not rewritten


@dataclass(frozen=True)
class Late:
    key: str
    point: SeriesPoint
    window_start: datetime
    window_end: datetime


@dataclass
class Output:
    emitted: list[WindowStat] = field(default_factory=list)  # closes and restatements, final
    restated: list[tuple[Late, WindowStat]] = field(default_factory=list)  # for the audit
    late: list[Late] = field(default_factory=list)  # beyond the allowed lateness
    duplicates: int = 0  # already counted (at-least-once redelivery)

    def extend(self, other: Output) -> None:
        self.emitted.extend(other.emitted)
        self.restated.extend(other.restated)
        self.late.extend(other.late)
        self.duplicates += other.duplicates


class WindowEngine:
    """The windows of one stream of keyed points, closed by that stream's own watermark."""

    CLOCK = "clock"

    def __init__(
        self,
        specs: Iterable[WindowSpec],
        grace: timedelta,
        allowed_lateness: timedelta = timedelta(0),
        top_n: int = 3,
        idle_close: timedelta | None = None,
    ) -> None:
        self.specs = tuple(sorted(set(specs)))
        if not self.specs:
            raise ValueError("at least one window spec is needed")
        if grace < timedelta(0) or allowed_lateness < timedelta(0):
            raise ValueError("grace and allowed lateness must be non-negative")
        self.grace = grace
        self.lateness = allowed_lateness
        self.top_n = top_n
        self.idle_close = idle_close
        self.slots: dict[SlotKey, Slot] = {}
        self.max_event: datetime | None = None
        self.event_clock: datetime | None = None  # max_event, advanced by idle time
        self.last_arrival: datetime | None = None  # wall clock of the last story
        # Wall clock since which this process saw no lag and no story (not saved: after a
        # restart, quiet is measured afresh).
        self.quiet_since: datetime | None = None
        self._to_close: list[tuple[datetime, str, datetime]] = []  # (end, key, start) open slots
        self._to_retire: list[tuple[datetime, str, datetime]] = []  # (end, key, start) closed
        self._dirty: set[SlotKey] = set()
        self._updated: set[SlotKey] = set()  # open slots changed since the last update flush
        self._removed: dict[SlotKey, int] = {}  # retired slots -> id chunks to delete
        self._bounds_ts: datetime | None = None
        self._bounds: list[tuple[datetime, datetime]] = []

    @property
    def watermark(self) -> datetime | None:
        return None if self.event_clock is None else self.event_clock - self.grace

    def bounds(self, ts: datetime) -> list[tuple[datetime, datetime]]:
        # A story's points arrive together (one per series), so remember the last answer.
        if ts != self._bounds_ts:
            self._bounds = sorted({b for spec in self.specs for b in spec.bounds(ts)})
            self._bounds_ts = ts
        return self._bounds

    def add(self, key: str, point: SeriesPoint, now: datetime, out: Output | None = None) -> Output:
        """Count one point; return what closed or was restated because of it (added to ``out``
        when given: the aggregator collects a whole batch's in one)."""
        if out is None:
            out = Output()
        ts = point.published_at
        watermark = self.watermark
        # A window that ends at or before this is beyond its allowed lateness.
        too_late = None if watermark is None else watermark - self.lateness
        slots = self.slots
        story = point.id
        for start, end in self.bounds(ts):
            if too_late is not None and end <= too_late:
                out.late.append(Late(key, point, start, end))
                continue
            slot_key = (key, start, end)
            slot = slots.get(slot_key)
            if slot is None:
                slot = slots[slot_key] = Slot()
                heapq.heappush(self._to_close, (end, key, start))
            if story in slot.ids:
                out.duplicates += 1
                continue
            slot.ids.add(story)
            slot.new_ids.append(story)
            slot.acc.add(point, self.top_n)
            self._dirty.add(slot_key)
            if watermark is not None and end <= watermark:
                # Closed, but within the allowed lateness: the late story restates the window.
                first = slot.version == 0
                slot.version += 1
                stat = slot.acc.result(key, start, end, now, slot.version, final=True)
                out.emitted.append(stat)
                if first:  # a key's first story for an already closed window
                    heapq.heappush(self._to_retire, (end, key, start))
                else:
                    out.restated.append((Late(key, point, start, end), stat))
            else:
                self._updated.add(slot_key)
        self.last_arrival = now
        self.quiet_since = None
        if self.max_event is None or ts > self.max_event:
            self.max_event = ts
        if self.event_clock is None or ts > self.event_clock:
            self.event_clock = ts
            out.emitted.extend(self._close(now))
        return out

    def add_item(self, scored: ScoredItem, now: datetime) -> Output:
        """Fan a scored story out to its series and count it in each (tests, references)."""
        out = Output()
        for key, point in fan_out(scored):
            out.extend(self.add(key, point, now))
        return out

    def advance(self, now: datetime, caught_up: bool) -> list[WindowStat]:
        """Close the windows of a quiet period: once the input has been quiet (``caught_up``
        with it, no lag, and no story) for ``idle_close``, event time follows the wall clock
        for as long as it stays quiet."""
        if self.idle_close is None or self.max_event is None:
            return []
        if not caught_up:
            self.quiet_since = None
            return []
        if self.quiet_since is None:
            self.quiet_since = now
        idle = now - self.quiet_since
        if idle < self.idle_close:
            return []
        clock = self.max_event + idle
        if self.event_clock is not None and clock <= self.event_clock:
            return []
        self.event_clock = clock
        return self._close(now)

    def close_all(self, now: datetime) -> list[WindowStat]:
        """End of input (a backtest's drained feed): move event time past every open window
        and close them all, exactly as a later story would have."""
        if not self._to_close:
            return []
        clock = max(end for end, _, _ in self._to_close) + self.grace
        if self.event_clock is None or clock > self.event_clock:
            self.event_clock = clock
        return self._close(now)

    def updates(self, now: datetime) -> list[WindowStat]:
        """The running figures of open windows changed since the last call (version 0, not final),
        for live views. Alerting reads final windows only."""
        stats = []
        for slot_key in sorted(self._updated):
            slot = self.slots.get(slot_key)
            if slot is not None and slot.version == 0:
                key, start, end = slot_key
                stats.append(slot.acc.result(key, start, end, now, version=0, final=False))
        self._updated.clear()
        return stats

    def _close(self, now: datetime) -> list[WindowStat]:
        watermark = self.watermark
        assert watermark is not None
        closed = []
        while self._to_close and self._to_close[0][0] <= watermark:
            end, key, start = heapq.heappop(self._to_close)
            slot = self.slots.get((key, start, end))
            if slot is None or slot.version:
                continue
            slot.version = 1
            self._dirty.add((key, start, end))
            closed.append(slot.acc.result(key, start, end, now, version=1, final=True))
            heapq.heappush(self._to_retire, (end, key, start))
        while self._to_retire and self._to_retire[0][0] + self.lateness <= watermark:
            end, key, start = heapq.heappop(self._to_retire)
            slot = self.slots.pop((key, start, end), None)
            if slot is not None:
                self._dirty.discard((key, start, end))
                self._updated.discard((key, start, end))
                self._removed[(key, start, end)] = slot.id_chunks + (1 if slot.new_ids else 0)
        closed.sort(key=lambda w: (w.window_end, w.window_start, w.key))
        return closed

    # -- persistence: the aggregator stores this with its offsets -------------

    def take_changes(self) -> tuple[dict[str, Any], set[str]]:
        """State rows to upsert and to delete since the last call.

        Counted ids go out in append-only chunks, so a long window is not rewritten per batch.
        """
        put: dict[str, Any] = {}
        for slot_key in self._dirty:
            slot = self.slots[slot_key]
            sid = _slot_id(slot_key)
            if slot.new_ids:
                put[f"{sid}#ids{slot.id_chunks}"] = slot.new_ids
                slot.id_chunks += 1
                slot.new_ids = []
            put[sid] = {"acc": slot.acc.to_state(), "v": slot.version, "chunks": slot.id_chunks}
        put[self.CLOCK] = {
            "max_event": _iso(self.max_event),
            "event_clock": _iso(self.event_clock),
            "last_arrival": _iso(self.last_arrival),
        }
        delete: set[str] = set()
        for slot_key, chunks in self._removed.items():
            sid = _slot_id(slot_key)
            delete.add(sid)
            delete.update(f"{sid}#ids{i}" for i in range(chunks))
        self._dirty.clear()
        self._removed.clear()
        return put, delete

    @classmethod
    def series_of(cls, row: str) -> str | None:
        """The series key a saved state row belongs to; None for the engine's clock."""
        if row == cls.CLOCK:
            return None
        return _parse_slot(row.split("#ids", 1)[0])[0]

    @staticmethod
    def latest_clock(clocks: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """One saved clock that is the latest of these, field by field: for an engine that
        takes over the windows of engines with these clocks."""
        merged: dict[str, Any] = {}
        for field_name in ("max_event", "event_clock", "last_arrival"):
            times = [t for c in clocks if (t := _parse(c.get(field_name))) is not None]
            merged[field_name] = _iso(max(times)) if times else None
        return merged

    def restore(self, state: dict[str, Any]) -> None:
        clock = state.get(self.CLOCK)
        if clock:
            self.max_event = _parse(clock["max_event"])
            self.event_clock = _parse(clock["event_clock"])
            self.last_arrival = _parse(clock["last_arrival"])
        for sid, value in state.items():
            if sid == self.CLOCK or "#ids" in sid:
                continue
            slot_key = _parse_slot(sid)
            slot = Slot(
                acc=Accumulator.from_state(value["acc"]),
                version=value["v"],
                id_chunks=value["chunks"],
            )
            for i in range(slot.id_chunks):
                slot.ids.update(state.get(f"{sid}#ids{i}", ()))
            self.slots[slot_key] = slot
            key, start, end = slot_key
            heap = self._to_retire if slot.version else self._to_close
            heapq.heappush(heap, (end, key, start))


def _slot_id(slot: SlotKey) -> str:
    key, start, end = slot
    return f"{start.isoformat()}|{end.isoformat()}|{key}"


def _parse_slot(slot_id: str) -> SlotKey:
    start, end, key = slot_id.split("|", 2)
    return key, datetime.fromisoformat(start), datetime.fromisoformat(end)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
