"""Replay ingest: a CSV or JSONL file of stories → ``news.raw``, in publish-time order.

Columns/fields: ``title`` (required), ``published_at`` (ISO 8601; naive times are read as UTC),
``source``, ``url``, ``body``, ``tickers`` (a list, or a string split on commas/spaces).
A row that cannot become a ``NewsItem`` goes to the dead-letter topic with the reason.
The message key is the story id, so redeliveries of one story land in one partition.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

from finsent.kafka_io import DeadLetters, make_producer
from finsent.records import NewsItem, encode, stable_id
from finsent.settings import Settings

log = logging.getLogger(__name__)
STAGE = "ingest"
_TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


class RowError(ValueError):
    pass


@dataclass
class ReplayStats:
    read: int = 0
    sent: int = 0
    duplicates: int = 0
    dead: int = 0


def read_rows(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | RowError]]:
    """Yield (line number, raw bytes, row or error) for each record in a CSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield number, raw, RowError(f"line {number}: invalid JSON: {exc}")
                    continue
                if not isinstance(row, dict):
                    yield number, raw, RowError(f"line {number}: expected a JSON object")
                    continue
                yield number, raw, row
    elif suffix == ".csv":
        with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=2):
                raw = json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape")
                yield number, raw, row
    else:
        raise ValueError(
            f"{path}: replay reads .csv or .jsonl files, not {suffix or 'no extension'}"
        )


def parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise RowError("published_at is missing")
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise RowError(f"published_at {value!r} is not ISO 8601") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def parse_tickers(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    parts = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    tickers = [str(p).strip().lstrip("$").upper() for p in parts if str(p).strip()]
    bad = [t for t in tickers if not _TICKER.match(t)]
    if bad:
        raise RowError(f"invalid ticker(s): {bad}")
    return tuple(dict.fromkeys(tickers))


def to_news_item(row: dict[str, Any], default_source: str, fetched_at: datetime) -> NewsItem:
    title = " ".join(str(row.get("title") or "").split())
    if not title:
        raise RowError("title is missing")
    source = str(row.get("source") or default_source).strip()
    url = str(row.get("url") or "").strip()
    try:
        return NewsItem(
            id=str(row.get("id") or stable_id(url, title, source)),
            source=source,
            title=title,
            url=url,
            body=" ".join(str(row.get("body") or "").split()),
            published_at=parse_time(row.get("published_at")),
            fetched_at=fetched_at,
            tickers=parse_tickers(row.get("tickers")),
        )
    except RowError:
        raise
    except (TypeError, ValueError) as exc:
        raise RowError(str(exc)) from exc


def load(
    path: Path, default_source: str, dead: DeadLetters | None, stats: ReplayStats
) -> list[NewsItem]:
    fetched_at = datetime.now(UTC)
    items: list[NewsItem] = []
    for number, raw, row in read_rows(path):
        stats.read += 1
        if isinstance(row, RowError):
            reason = str(row)
        else:
            try:
                items.append(to_news_item(row, default_source, fetched_at))
                continue
            except RowError as exc:
                reason = f"line {number}: {exc}"
        stats.dead += 1
        if dead is not None:
            dead.send(reason, raw)
    items.sort(key=lambda item: item.published_at)  # stable: file order breaks ties
    return items


def replay(
    settings: Settings,
    path: Path,
    stop: threading.Event,
    speed: float | None = None,
    source: str | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Send a file's stories in publish-time order; ``speed`` None means as fast as possible."""
    producer = make_producer(settings)
    dead = DeadLetters(settings, producer, STAGE)
    stats = ReplayStats()
    topic = settings.topic("news.raw")
    try:
        items = load(path, source or path.stem, dead, stats)
        sent_ids: set[str] = set()
        futures = []
        wall0 = time.monotonic()
        event0 = items[0].published_at if items else None
        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"replay {path.name}", total=len(items))
            for item in items:
                if stop.is_set():
                    break
                if speed and event0 is not None:
                    due = wall0 + (item.published_at - event0).total_seconds() / speed
                    if stop.wait(max(0.0, due - time.monotonic())):
                        break
                if item.id in sent_ids:
                    stats.duplicates += 1
                    bar.advance(task)
                    continue
                sent_ids.add(item.id)
                futures.append(producer.send(topic, key=item.id.encode(), value=encode(item)))
                stats.sent += 1
                bar.advance(task)
                if len(futures) >= 1000:
                    _settle(producer, futures)
        _settle(producer, futures)
    finally:
        producer.close()
    log.info("replay %s: %s", path.name, stats)
    return stats


def _settle(producer: Any, futures: list[Any]) -> None:
    producer.flush()
    for future in futures:
        future.get(timeout=60)  # raise on a failed delivery instead of losing it
    futures.clear()
