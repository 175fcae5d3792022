"""Replay ingest: a file of stories → ``news.raw``, in publish-time order, at a speed factor.

Reads CSV or JSONL (fields ``title``, ``published_at``, ``source``, ``url``, ``body``,
``tickers``, optional ``id``) and the RSS-archive JSON of ``rss_link_db_2023_business_h1``
(a folder of ``*_entries.json`` files, or one, in either of its two shapes). Every story goes
through the same normalization, dedup and novelty as live polling, and the same admit-and-send
path (``finsent.ingest.admit``); each keeps its event time. A row that cannot become a
``NewsItem`` goes to the dead-letter topic with the reason.

Progress (loading, dedup, sending) is drawn on stderr, so stdout keeps only the result line a
script reads; rich redraws it live on a terminal only, and elsewhere (a log, a pipe) prints
each bar's final state once instead of a stream of control characters.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.engine import make_url

from finsent.core.feed_files import RowError, read_rows
from finsent.core.records import MAX_ID_CHARS, NewsItem
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.core.watchlist import NO_WATCHLIST, Watchlist
from finsent.ingest.admit import Admission, IngestConfig
from finsent.ingest.normalize import NormalizeError, normalize, parse_published
from finsent.ingest.raw import RawStory
from finsent.ingest.tickers import MAX_STATED_TICKERS
from finsent.runtime.kafka_io import DeadLetterSink
from finsent.runtime.runner import SourceRunner, StoppedRetrying

log = logging.getLogger(__name__)
STAGE = "ingest"
# Rows read, and stories deduplicated, between two progress updates: the dedup memory is asked
# once per chunk, so each chunk's stories see the ones before them as if decided in one call.
PROGRESS_EVERY = 1024


@dataclass
class ReplayStats:
    read: int = 0
    sent: int = 0
    duplicates: int = 0
    dead: int = 0
    outside: int = 0  # published outside the requested [since, until) period
    load_seconds: float = 0.0  # read the file and put it in order
    send_seconds: float = 0.0  # normalize, dedup, produce, and wait for every acknowledgement


def file_id(row_id: str) -> str:
    """A file's own story id, as it is when it fits a record, else a hash of it: still stable
    (a re-replay keeps its ids, so dedup holds), and never a story lost to a long id."""
    if len(row_id) <= MAX_ID_CHARS:
        return row_id
    return "h" + hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:40]


def row_story(row: dict[str, Any], default_source: str, raw: bytes) -> RawStory:
    """A file's row as a raw story; NormalizeError when its tickers are neither a list nor a
    comma- or space-separated string."""
    tickers = row.get("tickers")
    if isinstance(tickers, str):
        tickers = re.split(r"[,\s]+", tickers)
    elif tickers is not None and not isinstance(tickers, list):
        raise NormalizeError(f"tickers is a {type(tickers).__name__}, not a list or a string")
    return RawStory(
        source=str(row.get("source") or default_source).strip() or default_source,
        title=str(row.get("title") or ""),
        url=str(row.get("url") or ""),
        summary=str(row.get("body") or ""),
        published=row.get("published_at") or None,
        tickers=tuple(
            str(t).strip().lstrip("$")
            for t in (tickers or ())[:MAX_STATED_TICKERS]
            if str(t).strip()
        ),
        raw=raw,
    )


@dataclass(frozen=True)
class OrderedRow:
    """A readable row of a file, placed in publish-time order before it is normalized."""

    published: datetime  # what `normalize` will give the story (the fetch time if it has none)
    number: int  # line or entry number, for dead letters; file order breaks ties
    raw: bytes
    row: dict[str, Any]
    story: RawStory


def read_in_order(
    path: Path,
    default_source: str,
    dead: DeadLetterSink | None,
    stats: ReplayStats,
    now: datetime,
    on_read: Callable[[int], None] | None = None,
) -> list[OrderedRow]:
    """Every row of `path` that is a raw story, in publish-time order (stable: file order breaks
    ties); the rest → DLQ. Only the publish time is parsed here, so the costly normalization
    can run as the stories are sent (`normalized`) instead of before the first one.

    ``on_read(rows)`` is told how many rows are read so far, every ``PROGRESS_EVERY`` rows."""
    ordered: list[OrderedRow] = []
    for number, raw, row in read_rows(path):
        stats.read += 1
        if on_read is not None and stats.read % PROGRESS_EVERY == 0:
            on_read(stats.read)
        if isinstance(row, RowError):
            reason = str(row)
        else:
            try:
                story = row_story(row, default_source, raw)
                published, _inferred = parse_published(story.published, now)
            except NormalizeError as exc:
                reason = f"line {number}: {exc.reason}"
            except Exception as exc:  # a bug on odd input must not abort the replay
                log.exception("replay %s: line %d could not be read", path.name, number)
                reason = f"line {number}: internal error: {type(exc).__name__}: {exc}"[:500]
            else:
                ordered.append(OrderedRow(published, number, raw, row, story))
                continue
        _dead_row(stats, dead, reason, raw)
    ordered.sort(key=lambda entry: entry.published)  # stable: file order breaks ties
    return ordered


def normalized(
    rows: Iterable[OrderedRow],
    path: Path,
    dead: DeadLetterSink | None,
    stats: ReplayStats,
    now: datetime,
    max_future: timedelta = timedelta(hours=6),
    watchlist: Watchlist = NO_WATCHLIST,
) -> Iterator[NewsItem]:
    """The rows as `NewsItem`s, in their order, as they are asked for; a row that cannot become
    one → DLQ with the reason. One bad row costs that row: whatever it raises is the reason."""
    for entry in rows:
        try:
            item = normalize(
                entry.story, fetched_at=now, now=now, max_future=max_future, watchlist=watchlist
            )
            if entry.row.get("id"):  # a file may carry its own stable ids
                item = replace(item, id=file_id(str(entry.row["id"])))
        except NormalizeError as exc:
            reason = f"line {entry.number}: {exc.reason}"
        except Exception as exc:  # a bug on odd input must not abort the replay
            log.exception("replay %s: line %d could not be read", path.name, entry.number)
            reason = f"line {entry.number}: internal error: {type(exc).__name__}: {exc}"[:500]
        else:
            yield item
            continue
        _dead_row(stats, dead, reason, entry.raw)


def _dead_row(stats: ReplayStats, dead: DeadLetterSink | None, reason: str, raw: bytes) -> None:
    stats.dead += 1
    if dead is not None:
        dead.send(reason, raw)


def load(
    path: Path,
    default_source: str,
    dead: DeadLetterSink | None,
    stats: ReplayStats,
    now: datetime | None = None,
    max_future: timedelta = timedelta(hours=6),
    on_read: Callable[[int], None] | None = None,
    watchlist: Watchlist = NO_WATCHLIST,
) -> list[NewsItem]:
    """Every readable story of `path`, normalized and in publish-time order; the rest → DLQ
    (`read_in_order`, then `normalized`, at once)."""
    now = now or datetime.now(UTC)
    rows = read_in_order(path, default_source, dead, stats, now, on_read)
    return list(normalized(rows, path, dead, stats, now, max_future, watchlist))


def replay(
    settings: Settings,
    path: Path,
    stop: threading.Event,
    speed: float | None = None,
    source: str | None = None,
    progress: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    admission: Admission | None = None,
) -> ReplayStats:
    """Send a file's new stories in publish-time order; ``speed`` None means as fast as possible.

    ``since``/``until`` keep the stories published in [since, until); ``on_progress(sent,
    total)`` reports progress to a caller that draws its own bar (``total``: the stories
    left to send at most, until the last report, where it is the number sent).

    Exact duplicates (by canonical URL or title, remembered across runs) are dropped and
    counted; near-duplicates are sent with their story chain and a lower novelty.
    ``admission``: the ingest stage's logic (default: this deployment's), closed at the end.
    The entry point of a replay: it builds the stage's config from the settings.

    The file is read and put in order first; normalization and dedup then run as the stories
    are sent, a chunk at a time, so the first stories reach the broker (and a backtest's
    scorer) within seconds instead of after the whole file is normalized.
    """
    config = IngestConfig.from_settings(settings)
    # Large batches, compressed: a replay is a bulk load, not a latency path.
    runner = SourceRunner.kafka(settings, stage(STAGE), linger_ms=20, batch_size=256 * 1024)
    admission = admission or Admission.open(config)
    stats = ReplayStats()
    try:
        with progress_bars(progress) as bar:
            now = datetime.now(UTC)
            started = time.perf_counter()
            loading = bar.add_task(f"load {path.name}", total=None, unit="rows")
            rows = read_in_order(
                path,
                source or path.stem,
                runner.dead,
                stats,
                now,
                on_read=lambda read: bar.update(loading, completed=read),
            )
            bar.update(loading, total=stats.read, completed=stats.read)
            stats.load_seconds = round(time.perf_counter() - started, 3)
            deduplicating = bar.add_task("dedup", total=len(rows), unit="stories")
            task = bar.add_task(f"send {path.name}", total=len(rows), unit="stories")
            upper_bound = len(rows)  # of the stories to send: every readable row

            def admitted() -> Iterator[NewsItem]:
                """Normalized, inside the period, and not exact duplicates, a chunk at a time:
                the dedup memory is asked once per chunk, as if the whole file were decided
                in order."""
                nonlocal upper_bound
                items = normalized(
                    rows, path, runner.dead, stats, now, config.max_future, config.watchlist
                )
                done = 0
                while chunk := list(islice(items, PROGRESS_EVERY)):
                    inside, outside = within_period(chunk, since, until)
                    kept, duplicates = admission.decide(inside, now)
                    stats.outside += outside
                    stats.duplicates += duplicates
                    upper_bound -= len(chunk) - len(kept)
                    done += len(chunk)
                    bar.update(deduplicating, completed=done)
                    yield from kept
                bar.update(deduplicating, total=done, completed=done)

            send_started = time.monotonic()
            clock: list[tuple[float, datetime]] = []  # (wall, event time) of the first story

            def paced() -> Iterator[NewsItem]:
                """The stories at their pace, counted and shown as the runner sends them."""
                for n, item in enumerate(admitted(), 1):
                    if stop.is_set():
                        return
                    if not clock:
                        clock.append((time.monotonic(), item.published_at))
                    if speed:
                        wall0, event0 = clock[0]
                        due = wall0 + (item.published_at - event0).total_seconds() / speed
                        if stop.wait(max(0.0, due - time.monotonic())):
                            return
                    yield item
                    stats.sent += 1
                    if n % 256 == 0 or speed:
                        bar.update(task, completed=n, total=upper_bound)
                        if on_progress is not None:
                            on_progress(n, upper_bound)

            # Remembered only once every story is acknowledged, and not after a stop.
            try:
                admission.send(runner, paced(), consumed=stats.read, stop=stop)
            except StoppedRetrying:
                log.warning("replay %s stopped before the broker took every story", path.name)
            bar.update(task, completed=stats.sent, total=stats.sent)
            if on_progress is not None:
                on_progress(stats.sent, stats.sent)
        stats.send_seconds = round(time.monotonic() - send_started, 3)
    finally:
        runner.close()
        admission.close()
    log.info("replay %s: %s", path.name, stats)
    return stats


def within_period(
    items: list[NewsItem], since: datetime | None, until: datetime | None
) -> tuple[list[NewsItem], int]:
    """The stories published in [since, until) (either end open when None), in their order,
    and how many fell outside."""
    kept = [
        i
        for i in items
        if (since is None or i.published_at >= since) and (until is None or i.published_at < until)
    ]
    return kept, len(items) - len(kept)


def progress_bars(enabled: bool) -> Progress:
    """The replay's bars (load, dedup, send) on stderr; see the module's docstring."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def memory_location(url: str) -> str:
    """Where a dedup memory is, for a message: a SQLite file's path, or the database URL with
    any password hidden."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def nothing_sent_reason(stats: ReplayStats, memory: str) -> str | None:
    """Why a replay that read stories sent none of them, when the dedup memory is why (a file
    replayed before); None when it sent something or the reason lies elsewhere."""
    if stats.sent or not stats.duplicates:
        return None
    share = "all were" if stats.duplicates == stats.read else f"{stats.duplicates:,} were"
    others = [
        f"{count:,} {what}"
        for count, what in ((stats.dead, "unreadable"), (stats.outside, "outside the period"))
        if count
    ]
    rest = f", {' and '.join(others)}" if others else ""
    return (
        f"sent 0 of {stats.read:,} stories: {share} seen before (dedup memory at {memory})"
        f"{rest}; use --fresh to replay them again"
    )


@contextmanager
def throwaway_admission(settings: Settings) -> Iterator[Admission]:
    """The ingest logic over an empty dedup memory of its own, deleted afterwards: a replay
    with it (``--fresh``) sends every story of the file again, and this deployment's memory
    is neither read nor changed. Duplicates within the file are still dropped."""
    config = IngestConfig.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="finsent-fresh-") as folder:
        memory = replace(config, state_url=f"sqlite:///{Path(folder) / 'dedup.db'}")
        yield Admission.open(memory)
