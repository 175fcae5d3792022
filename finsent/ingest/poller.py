"""Scheduled polling of feed and API sources, with per-source exponential backoff.

One APScheduler interval job per source. Each run fetches (conditional GET for feeds), parses
and hands the result to ``on_result(source_name, stories, errors)``. A run that yields nothing
but errors (or whose callback fails) is a failure: the source's job is rescheduled at
interval × 2^failures, capped, and put back on its own interval after the next success.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from finsent.core.watchlist import NO_WATCHLIST, Watchlist, load_watchlist
from finsent.ingest.api_source import fetch_api
from finsent.ingest.feeds import clean_tickers, parse_feed
from finsent.ingest.fetch import Fetcher
from finsent.ingest.raw import IngestError, RawStory
from finsent.ingest.sources import Source, SourcesError, load_sources
from finsent.ingest.tickers import MAX_STATED_TICKERS, known_symbols
from finsent.runtime.runner import StoppedRetrying

if TYPE_CHECKING:
    from finsent.core.settings import Settings

log = logging.getLogger(__name__)

ResultCallback = Callable[[str, list[RawStory], list[IngestError]], None]
DEFAULT_MAX_BACKOFF_SECONDS = 3600.0
STATE_FILE_NAME = "http_validators.json"

# Reason prefix → counter kind. Reasons are written by fetch/feeds/api_source.
_REASON_KINDS = (
    ("connect timeout", "timeout"),
    ("timeout", "timeout"),
    ("connection reset", "connection_reset"),
    ("connection refused", "connection_refused"),
    ("connection failed", "connection_failed"),
    ("too many redirects", "too_many_redirects"),
    ("redirect to another origin", "cross_origin"),
    ("cursor to another origin", "cross_origin"),
    ("address refused", "address_refused"),
    ("bad content encoding", "bad_encoding"),
    ("response larger than", "too_large"),
    ("XML bomb rejected", "xml_bomb"),
    ("malformed XML", "malformed_xml"),
    ("not a feed", "not_a_feed"),
    ("missing field", "missing_field"),
    ("missing API key", "missing_api_key"),
    ("invalid JSON", "invalid_json"),
    ("callback failed", "callback"),
    ("internal error", "internal"),
)


def reason_kind(reason: str) -> str:
    """A short counter key for an IngestError reason: "HTTP 503" → "http_503", etc."""
    reason = re.sub(r"^page \d+: ", "", reason)
    match = re.match(r"HTTP (\d{3})", reason)
    if match:
        return f"http_{match.group(1)}"
    for prefix, kind in _REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    head = reason.split(":", 1)[0].lower()
    return re.sub(r"[^a-z]+", "_", head).strip("_")[:40] or "other"


@dataclass(frozen=True)
class PollerConfig:
    """Where the poller finds its sources, and how its fetcher fetches them."""

    sources_file: Path | None  # the YAML list of feeds and APIs to poll
    user_agent: str
    fetch_timeout_seconds: float  # per read; connecting gets at most 5 s of it
    fetch_max_bytes: int  # a larger response is refused
    http_state_path: Path  # the ETag/Last-Modified memory, kept across restarts
    # The analyst's companies: symbols a source may state beside the built-in index's
    watchlist: Watchlist = NO_WATCHLIST

    @classmethod
    def from_settings(cls, settings: Settings, watchlist: Watchlist | None = None) -> PollerConfig:
        """``watchlist``: the one already read (default: read the settings' file)."""
        return cls(
            sources_file=settings.sources_file,
            user_agent=settings.user_agent,
            fetch_timeout_seconds=settings.fetch_timeout_seconds,
            fetch_max_bytes=settings.fetch_max_bytes,
            http_state_path=settings.cache_dir / "ingest" / STATE_FILE_NAME,
            watchlist=load_watchlist(settings.watchlist_file) if watchlist is None else watchlist,
        )


@dataclass
class PollOutcome:
    """What one run of one source did (returned by `run_once`, for tests and tools)."""

    source: str
    stories: list[RawStory]
    errors: list[IngestError]
    not_modified: bool = False
    failed: bool = False
    interval_seconds: float = 0.0  # until the next run, after any backoff
    warnings: list[str] = field(default_factory=list)


@dataclass
class _SourceState:
    source: Source
    interval_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetches: int = 0
    not_modified: int = 0
    stories: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    warnings: int = 0
    consecutive_failures: int = 0
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None


class FeedPoller:
    """Polls sources on their intervals and hands each run's stories and errors to a callback.

    `fetcher` and `scheduler` may be injected (tests); otherwise the poller builds and owns a
    `Fetcher` and a `BackgroundScheduler`. An injected scheduler is left running on shutdown
    (only this poller's jobs are removed). `clock` stamps the counters. The library never reads
    argv and never exits the process.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        on_result: ResultCallback,
        *,
        fetcher: Fetcher | None = None,
        scheduler: BaseScheduler | None = None,
        max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
        max_workers: int = 8,
        clock: Callable[[], datetime] | None = None,
        environ: Mapping[str, str] | None = None,
        close_fetcher: bool | None = None,
        watchlist: Watchlist = NO_WATCHLIST,
    ) -> None:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate source names: {duplicates}")
        self.on_result = on_result
        self.max_backoff_seconds = max_backoff_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._environ = environ
        self.watchlist = watchlist
        # shutdown() closes the fetcher if the poller built it, unless told otherwise.
        self._owns_fetcher = fetcher is None if close_fetcher is None else close_fetcher
        self.fetcher = fetcher or Fetcher()
        self._owns_scheduler = scheduler is None
        self.scheduler: BaseScheduler = scheduler or BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers)}
        )
        self._states = {
            s.name: _SourceState(source=s, interval_seconds=float(s.interval_seconds))
            for s in sources
        }
        self._lock = threading.Lock()
        self._started = False

    @classmethod
    def from_config(
        cls,
        config: PollerConfig,
        on_result: ResultCallback,
        sources_path: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        scheduler: BaseScheduler | None = None,
        **fetcher_options: Any,
    ) -> FeedPoller:
        """Sources from `sources_path` (default `config.sources_file`), with a fetcher of its
        own (closed on shutdown) set up by `config`; `fetcher_options` override that."""
        path = sources_path or config.sources_file
        if not path:
            raise SourcesError("no sources file: pass one or set FINSENT_SOURCES_FILE")
        sources = load_sources(path, environ=environ)
        options: dict[str, Any] = {
            "user_agent": config.user_agent,
            "connect_timeout": min(5.0, config.fetch_timeout_seconds),
            "read_timeout": config.fetch_timeout_seconds,
            "max_bytes": config.fetch_max_bytes,
            "state_path": config.http_state_path,
            **fetcher_options,
        }
        return cls(
            sources,
            on_result,
            fetcher=Fetcher(**options),
            scheduler=scheduler,
            environ=environ,
            close_fetcher=True,
            watchlist=config.watchlist,
        )

    # -- scheduling ------------------------------------------------------------------------

    @property
    def sources(self) -> list[Source]:
        return [state.source for state in self._states.values()]

    @staticmethod
    def job_id(name: str) -> str:
        return f"finsent-poll:{name}"

    def start(self) -> None:
        """Add one job per source (first run now) and start the scheduler if needed."""
        with self._lock:
            if self._started:
                return
            now = datetime.now(UTC)
            for name, state in self._states.items():
                self.scheduler.add_job(
                    self._job,
                    trigger=self._trigger(state),
                    args=[name],
                    id=self.job_id(name),
                    name=f"poll {name}",
                    next_run_time=now,
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(state.interval_seconds)),
                    replace_existing=True,
                )
            if self.scheduler.state == STATE_STOPPED:
                self.scheduler.start()
            self._started = True
        log.info("polling %d source(s)", len(self._states))

    def shutdown(self, wait: bool = True) -> None:
        """Stop polling; with `wait`, let running fetches finish. Safe to call twice."""
        with self._lock:
            # After this, running jobs no longer call into the scheduler (see _reschedule).
            if self._started:
                for name in self._states:
                    with contextlib.suppress(JobLookupError):
                        self.scheduler.remove_job(self.job_id(name))
                self._started = False
        # Outside our lock: a running job takes it to finish, and shutdown(wait) waits for it.
        if self._owns_scheduler and self.scheduler.state != STATE_STOPPED:
            self.scheduler.shutdown(wait=wait)
        if self._owns_fetcher:
            self.fetcher.close()

    def _trigger(self, state: _SourceState) -> IntervalTrigger:
        return IntervalTrigger(
            seconds=state.interval_seconds, jitter=state.source.jitter or None, timezone=UTC
        )

    def _job(self, name: str) -> None:
        try:
            self.run_once(name)
        except Exception:  # never let one source's bug kill the scheduler's worker
            log.exception("poll of %s failed unexpectedly", name)

    def _reschedule(self, state: _SourceState) -> None:
        """Put the source's job on its current (maybe backed-off) interval, counted from now."""
        if self._started and self.scheduler.state != STATE_STOPPED:
            try:
                job = self.scheduler.reschedule_job(
                    self.job_id(state.source.name), trigger=self._trigger(state)
                )
                state.next_run = job.next_run_time
                return
            except JobLookupError:
                pass
        state.next_run = self._clock() + timedelta(seconds=state.interval_seconds)

    # -- one run ---------------------------------------------------------------------------

    def run_once(self, source: Source | str) -> PollOutcome:
        """Fetch, parse and deliver one source now; updates counters and backoff. Never raises
        for bad input or network trouble (those are IngestErrors in the outcome)."""
        name = source if isinstance(source, str) else source.name
        state = self._states[name]
        with state.lock:  # one run per source at a time, scheduled or manual
            return self._run_locked(state)

    def _run_locked(self, state: _SourceState) -> PollOutcome:
        source = state.source
        stories: list[RawStory] = []
        errors: list[IngestError] = []
        warnings: list[str] = []
        not_modified = False
        fetched_url: str | None = None
        try:
            if source.kind == "api":
                stories, errors = fetch_api(source, self.fetcher, environ=self._environ)
            else:
                fetched_url = source.url
                result = self.fetcher.get(
                    source.url, source=source.name, allow_private=source.allow_private_network
                )
                if result.not_modified:
                    not_modified = True
                else:
                    stories, errors = parse_feed(
                        source.name,
                        result.body,
                        result.content_type,
                        base_url=result.url,
                        warnings=warnings,
                    )
        except IngestError as exc:
            errors = [exc]
        except Exception as exc:  # a parser bug is this source's error, not the process's
            log.exception("%s: unexpected error while polling", source.name)
            errors = [IngestError(source.name, f"internal error: {type(exc).__name__}: {exc}")]

        if stories and not source.trust_stated_tickers:
            stories = [
                replace(s, tickers=known_symbols(s.tickers, self.watchlist)) for s in stories
            ]
        if source.tickers and stories:
            room = max(0, MAX_STATED_TICKERS - len(source.tickers))  # the configured ones stay
            stories = [
                replace(s, tickers=clean_tickers([*s.tickers[:room], *source.tickers]))
                for s in stories
            ]

        failed = bool(errors) and not stories
        if not not_modified:
            try:
                self.on_result(source.name, stories, errors)
            except Exception as exc:
                if isinstance(exc, StoppedRetrying):  # shutting down with the broker away
                    log.warning("%s: stopped before the broker took the poll", source.name)
                else:
                    log.exception("%s: on_result callback failed", source.name)
                errors = [*errors, IngestError(source.name, f"callback failed: {exc}")]
                failed = True
                if fetched_url:
                    # The stories were not delivered: fetch the full body again next time.
                    self.fetcher.forget(fetched_url)

        now = self._clock()
        with self._lock:
            state.fetches += 1
            state.last_run = now
            state.not_modified += int(not_modified)
            state.stories += len(stories)
            state.warnings += len(warnings)
            for err in errors:
                state.errors[reason_kind(err.reason)] += 1
            if errors:
                state.last_error = errors[-1].reason
            previous = state.interval_seconds
            if failed:
                state.consecutive_failures += 1
            else:
                state.consecutive_failures = 0
                state.last_success = now
            state.interval_seconds = self._interval_for(state)
            if state.interval_seconds != previous or state.next_run is None:
                self._reschedule(state)
            else:
                state.next_run = self._scheduled_next_run(state) or (
                    now + timedelta(seconds=state.interval_seconds)
                )
        if failed:
            log.warning(
                "%s: poll failed (%s); next try in %.0f s",
                source.name,
                errors[-1].reason if errors else "?",
                state.interval_seconds,
            )
        return PollOutcome(
            source=source.name,
            stories=stories,
            errors=errors,
            not_modified=not_modified,
            failed=failed,
            interval_seconds=state.interval_seconds,
            warnings=warnings,
        )

    def _interval_for(self, state: _SourceState) -> float:
        base = float(state.source.interval_seconds)
        if state.consecutive_failures == 0:
            return base
        cap = max(self.max_backoff_seconds, base)
        # Bound the exponent so a long outage cannot overflow the float.
        return min(base * 2 ** min(state.consecutive_failures, 32), cap)

    def _scheduled_next_run(self, state: _SourceState) -> datetime | None:
        if not self._started:
            return None
        job = self.scheduler.get_job(self.job_id(state.source.name))
        return getattr(job, "next_run_time", None) if job else None

    # -- counters --------------------------------------------------------------------------

    def counters(self) -> dict[str, dict[str, Any]]:
        """A snapshot per source: fetches, not_modified, stories, errors (by kind), warnings,
        consecutive_failures, interval_seconds, next_run, last_run, last_success, last_error."""
        with self._lock:
            snapshot: dict[str, dict[str, Any]] = {}
            for name, state in self._states.items():
                next_run = self._scheduled_next_run(state) or state.next_run
                snapshot[name] = {
                    "fetches": state.fetches,
                    "not_modified": state.not_modified,
                    "stories": state.stories,
                    "errors": dict(state.errors),
                    "error_count": sum(state.errors.values()),
                    "warnings": state.warnings,
                    "consecutive_failures": state.consecutive_failures,
                    "interval_seconds": state.interval_seconds,
                    "next_run": next_run,
                    "last_run": state.last_run,
                    "last_success": state.last_success,
                    "last_error": state.last_error,
                }
            return snapshot
