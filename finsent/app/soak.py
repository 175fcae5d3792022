"""The soak test: every stage as its own process on a real broker, fed a generated live feed at
a steady rate for a long time, then judged on lag, memory and exact counts (issue 21).

``bench/soak.py`` is the command (``make soak``); ``tests/app/test_soak.py`` runs the same
machinery small. The run:

1. Starts every consuming stage (``finsent scorer``, ``router``, ``aggregator``, ``alerter``,
   ``notifier``) with the live settings, isolated as a backtest is (its own topic prefix,
   store, dedup memory and consumer groups), and waits until each has joined its group.
2. Starts the feed, a process that plays the ingest stage: it makes stories with
   ``finsent.ingest.generated_feed`` as they come due by the wall clock (``rate`` a second,
   published up to ``jitter_s`` before they are due) and hands them, every ``tick_s``, to
   the live ingest path (``IngestSink``: normalize, dedup and novelty, send, remember).
3. Samples every ``sample_every_s``: each stage's consumer lag, in records and in seconds
   (the age of the oldest record it has not consumed: now minus the Kafka timestamp of the
   record at its committed offset, i.e. how long that record has waited), the feed's backlog
   against its schedule, and the RSS of every process (``VmRSS`` of ``/proc/<pid>/status``),
   the broker's JVM included.
4. Once the feed has sent its last story, waits for every stage to consume all its input,
   stops the aggregator and closes the windows it left open with its own code (as a
   backtest does at the end of a feed), then reconciles (``reconcile``).

Verdicts: lag under ``lag_limit_s`` at every sample of every stage after ``startup_grace_s``
of feed; the RSS of every stage process (the feed included) grown by under
``rss_growth_limit`` from the warm-up mark to the end of the feed (each point the median of the
samples within ``RSS_SPAN_S``); reconciliation exact. The broker's JVM is reported, not judged:
its heap is sized up front (``kafka_heap``) and its RSS follows how much of it the collector
has touched yet, which says nothing about our code.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select

from finsent.app.launch import finsent_command, python_command
from finsent.app.supervisor import Supervisor
from finsent.core.durations import WindowSpec
from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.core.stages import Checkpoint, StageSpec, consumers
from finsent.ingest.admit import Admission, IngestConfig, novelty_tracker
from finsent.ingest.generated_feed import FeedGenerator, FeedShape, GeneratedStory, StoryKind
from finsent.ingest.normalize import canonical_url
from finsent.ingest.worker import IngestSink
from finsent.runtime.kafka_io import active_groups, delete_topics, ensure_topics, group_id
from finsent.runtime.store import Store, scored_items, windows

log = logging.getLogger(__name__)

FEED = "ingest"  # the feed's process name: it plays the ingest stage
BROKER = "kafka broker (JVM)"
STAGES: tuple[StageSpec, ...] = consumers()
RSS_SPAN_S = 30.0  # the RSS at a mark: the median of the samples this close to it
DRAIN_CLEAN_SAMPLES = 2  # drained: no stage behind in this many samples running
FEED_SOURCE = "generated"  # the feed's name in the ingest log


class SoakError(RuntimeError):
    """The soak could not run (a stage died, a timeout): no verdict."""


@dataclass(frozen=True)
class SoakRequest:
    out_dir: Path  # samples, summary and stage logs go here
    minutes: float = 30.0
    rate: float = 100.0  # stories a second, paced by the wall clock
    warmup_minutes: float = 5.0  # RSS growth is judged from here to the end of the feed
    shape: FeedShape = field(default_factory=FeedShape)
    sample_every_s: float = 5.0
    startup_grace_s: float = 30.0  # lag is not judged for this long after the feed starts
    lag_limit_s: float = 10.0
    rss_growth_limit: float = 0.05
    ready_timeout_s: float = 180.0  # for every stage to join its consumer group
    drain_timeout_s: float = 600.0  # for the stages to consume everything once the feed stops
    tick_s: float = 0.5  # the feed hands over what came due this often, as a poll would
    keep_work: bool = False  # keep the run's store and dedup memory (kept anyway on failure)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.minutes <= 0 or self.sample_every_s <= 0 or self.tick_s <= 0:
            raise ValueError("rate, minutes, sample_every_s and tick_s must be positive")
        if not 0 <= self.warmup_minutes < self.minutes:
            raise ValueError(
                f"the warm-up ({self.warmup_minutes:g} min) must be shorter than the run "
                f"({self.minutes:g} min)"
            )

    @property
    def stories(self) -> int:
        return round(self.minutes * 60 * self.rate)


# -- the feed process ---------------------------------------------------------------------


@dataclass(frozen=True)
class FeedPlan:
    """What the feed process is told (as JSON in a file: it is started as a child)."""

    stories: int
    rate: float
    tick_s: float
    shape: FeedShape
    status_path: Path  # rewritten every tick: progress and backlog
    result_path: Path  # written once the last story is acknowledged

    def write(self, path: Path) -> Path:
        data = {**asdict(self), "status_path": str(self.status_path)}
        data["result_path"] = str(self.result_path)
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> FeedPlan:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            stories=int(data["stories"]),
            rate=float(data["rate"]),
            tick_s=float(data["tick_s"]),
            shape=FeedShape(**data["shape"]),
            status_path=Path(data["status_path"]),
            result_path=Path(data["result_path"]),
        )


@dataclass
class FeedReport:
    """What the feed made and what the ingest path did with it."""

    emitted: dict[str, int] = field(default_factory=dict)  # by kind
    sent: int = 0  # by the ingest path (its own count)
    duplicates: int = 0  # dropped by the ingest path as exact duplicates
    dead: int = 0
    # What should be counted, from the generator's intent alone: every story but the copies,
    # under "overall", "ticker:<its ticker>" and "source:<its outlet>".
    expected: dict[str, int] = field(default_factory=dict)
    chained: dict[str, int] = field(default_factory=dict)  # kept stories joined to a chain, by kind
    seconds: float = 0.0

    @classmethod
    def read(cls, path: Path) -> FeedReport:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class _WatchedAdmission(Admission):
    """The ingest logic, keeping its last verdicts for the feed's tally."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kept: list[Any] = []

    def decide(self, items: Sequence[Any], now: datetime) -> tuple[list[Any], int]:
        kept, duplicates = super().decide(items, now)
        self.kept = kept
        return kept, duplicates


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    partial.replace(path)


def run_feed(settings: Settings, plan: FeedPlan, stop: threading.Event) -> FeedReport:
    """Play the ingest stage: ``plan.stories`` generated stories at ``plan.rate`` a second by
    the wall clock, handed to the live ingest path every ``plan.tick_s``."""
    config = IngestConfig.from_settings(settings)
    admission = _WatchedAdmission(novelty_tracker(config), config.retention)
    sink = IngestSink.kafka(settings, admission, stop)
    generator = FeedGenerator(plan.shape)
    report = FeedReport()
    emitted: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    chained: Counter[str] = Counter()
    start_wall = datetime.now(UTC)
    start = time.monotonic()
    done = 0
    try:
        while done < plan.stories and not stop.is_set():
            tick = time.monotonic()
            due = min(plan.stories, int((tick - start) * plan.rate))
            batch = [
                generator.story(start_wall + timedelta(seconds=n / plan.rate))
                for n in range(done, due)
            ]
            if batch:
                sink(FEED_SOURCE, [s.raw for s in batch], [])
                _tally(batch, admission.kept, emitted, expected, chained)
                done = due
            behind = max((time.monotonic() - start) * plan.rate - done, 0.0) / plan.rate
            _write_atomically(plan.status_path, {"emitted": done, "behind_s": round(behind, 3)})
            stop.wait(max(0.0, plan.tick_s - (time.monotonic() - tick)))
    finally:
        sink.close()
    report.emitted = dict(emitted)
    report.sent = sink.counts["sent"]
    report.duplicates = sink.counts["duplicates"]
    report.dead = sink.counts["dead"]
    report.expected = dict(expected)
    report.chained = dict(chained)
    report.seconds = round(time.monotonic() - start, 3)
    return report


def _tally(
    batch: list[GeneratedStory],
    kept: Iterable[Any],
    emitted: Counter[str],
    expected: Counter[str],
    chained: Counter[str],
) -> None:
    kinds: dict[str, StoryKind] = {}
    for story in batch:
        emitted[story.kind] += 1
        kinds.setdefault(canonical_url(story.raw.url), story.kind)
        if story.kind != "exact":
            expected.update(("overall", f"ticker:{story.ticker}", f"source:{story.outlet}"))
    for item in kept:
        if item.chain_id != item.id:
            chained[kinds.get(item.url, "unknown")] += 1


def feed_command(plan_path: Path) -> list[str]:
    """The feed process's command line. Started by module and function, not as a CLI
    command: it is a test harness, not something a user runs."""
    code = "import sys; from finsent.app.soak import feed_main; sys.exit(feed_main(sys.argv[1]))"
    return python_command("-c", code, str(plan_path))


def feed_main(plan_path: str) -> int:
    """The feed process: its settings from the environment (the children's, as every stage's),
    its plan from ``plan_path``; SIGTERM stops it after the story in hand."""
    from finsent.runtime.process import install_stop_handlers, setup_logging

    settings = Settings()
    setup_logging(settings.log_level, settings.kafka_log_level)
    stop = install_stop_handlers()
    plan = FeedPlan.read(Path(plan_path))
    report = run_feed(settings, plan, stop)
    _write_atomically(plan.result_path, asdict(report))
    log.info("feed done: %s", {k: v for k, v in asdict(report).items() if k != "expected"})
    return 0


# -- sampling -----------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """The process's resident set (VmRSS) in MiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    return None  # a zombie has no VmRSS line


@dataclass(frozen=True)
class StageLag:
    records: int
    seconds: float  # the oldest unconsumed record's age; 0 when none is behind


class LagProbe:
    """Each consuming stage's lag: its committed offsets (the store's, or its Kafka group's,
    as the stage declares) against the read-committed ends of its input topic, and the Kafka
    timestamp of the first record it has not consumed. Not thread-safe: one sampler owns it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.settings = settings
        self.store = store
        common: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_servers,
            "client_id": "finsent-soak",
            "request_timeout_ms": 10_000,
        }
        self.consumer = KafkaConsumer(
            **common,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )
        self.admin = KafkaAdminClient(**common)

    def measure(self) -> dict[str, StageLag]:
        return {spec.name: self._stage(spec) for spec in STAGES}

    def _stage(self, spec: StageSpec) -> StageLag:
        from kafka.structs import TopicPartition

        assert spec.source is not None
        topic = self.settings.topic(spec.source)
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        if not parts:  # no metadata yet: unknown, never "no lag" (the drain waits for none)
            raise SoakError(f"no partitions known for {topic}")
        ends = self.consumer.end_offsets(parts)
        starts = self.consumer.beginning_offsets(parts)
        consumed = self._consumed(spec, topic)
        records, oldest_ms = 0, None
        for tp in parts:
            at = max(consumed.get(tp.partition, 0), int(starts[tp]))
            behind = max(int(ends[tp]) - at, 0)
            records += behind
            if behind:
                stamp = self._timestamp_at(tp, at)
                if stamp is not None:
                    oldest_ms = stamp if oldest_ms is None else min(oldest_ms, stamp)
        if not records:
            return StageLag(0, 0.0)
        if oldest_ms is None:  # only transaction markers behind, or the fetch timed out
            return StageLag(records, 0.0)
        return StageLag(records, max(time.time() - oldest_ms / 1000, 0.0))

    def _consumed(self, spec: StageSpec, topic: str) -> dict[int, int]:
        if spec.checkpoint is Checkpoint.STORE:
            return {p: o for (t, p), o in self.store.load_offsets(spec.name).items() if t == topic}
        committed = self.admin.list_consumer_group_offsets(group_id(self.settings, spec.name))
        return {
            tp.partition: int(meta.offset)
            for tp, meta in committed.items()
            if tp.topic == topic and meta.offset >= 0
        }

    def _timestamp_at(self, tp: Any, offset: int) -> int | None:
        """The Kafka timestamp (ms) of the first committed record at or after ``offset``."""
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=500, max_records=1)
            for records in batch.values():
                if records:
                    return int(records[0].timestamp)
        return None

    def dead_letters(self) -> Counter[str]:
        """The dead letters on the run's ``news.dlq``, by stage and kind."""
        from kafka.structs import TopicPartition

        topic = self.settings.topic("news.dlq")
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        found: Counter[str] = Counter()
        if not parts:
            return found
        ends = self.consumer.end_offsets(parts)
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 60
        while any((self.consumer.position(tp) or 0) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise SoakError(f"could not read {topic} to its end in 60 s")
            for records in self.consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        letter = json.loads(record.value)
                        found[f"{letter.get('stage', '?')}: {letter.get('kind') or '?'}"] += 1
                    except (ValueError, AttributeError):
                        found["unreadable"] += 1
        return found

    def close(self) -> None:
        for client in (self.consumer, self.admin):
            with contextlib.suppress(Exception):
                client.close()


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the feed started
    phase: str  # "feed" while it runs, then "drain"
    rss_mb: dict[str, float | None]  # by process
    lag: dict[str, StageLag]  # by stage; empty when Kafka did not answer
    feed_behind_s: float | None  # the feed's backlog against its schedule


class Sampler(threading.Thread):
    """Takes a ``Sample`` every ``every_s`` seconds until ``done`` is set."""

    def __init__(
        self,
        probe: LagProbe,
        pids: Callable[[], Mapping[str, int]],
        status_path: Path,
        every_s: float,
    ) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.probe = probe
        self.pids = pids
        self.status_path = status_path
        self.every_s = every_s
        self.done = threading.Event()
        self.phase = "feed"
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self.errors = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.done.is_set():
            self.samples.append(self.take())
            next_at += self.every_s
            self.done.wait(max(0.0, next_at - time.monotonic()))

    def take(self) -> Sample:
        at = round(time.monotonic() - self.started, 2)
        memory = {name: rss_mb(pid) for name, pid in self.pids().items()}
        try:
            lag = self.probe.measure()
        except Exception as exc:  # a slow broker answer: a gap in the plot, not a failed run
            self.errors += 1
            log.warning("lag sample failed: %s", exc)
            lag = {}
        return Sample(at, self.phase, memory, lag, self._behind())

    def _behind(self) -> float | None:
        try:
            return float(json.loads(self.status_path.read_text(encoding="utf-8"))["behind_s"])
        except (OSError, ValueError, KeyError):
            return None


def write_samples(samples: Sequence[Sample], path: Path) -> Path:
    """The samples as CSV, one row each: time, phase, the feed's backlog, then every stage's
    lag (seconds, records) and every process's RSS (MiB)."""
    stages = [spec.name for spec in STAGES]
    processes = list(dict.fromkeys(name for s in samples for name in s.rss_mb))
    header = ["t_s", "phase", "feed_behind_s"]
    header += [f"lag_s:{n}" for n in stages] + [f"lag_records:{n}" for n in stages]
    header += [f"rss_mb:{n}" for n in processes]
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for s in samples:
            row: list[Any] = [s.t_s, s.phase, s.feed_behind_s]
            row += [round(s.lag[n].seconds, 3) if n in s.lag else "" for n in stages]
            row += [s.lag[n].records if n in s.lag else "" for n in stages]
            row += [_round(s.rss_mb.get(n)) for n in processes]
            out.writerow(row)
    return path


def read_samples(path: Path) -> list[Sample]:
    """``write_samples``'s CSV back (for a plot of an earlier run)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    samples = []
    for row in rows:
        lag = {
            name.removeprefix("lag_s:"): StageLag(
                int(row[f"lag_records:{name.removeprefix('lag_s:')}"]), float(value)
            )
            for name, value in row.items()
            if name.startswith("lag_s:") and value != ""
        }
        memory = {
            name.removeprefix("rss_mb:"): float(value) if value != "" else None
            for name, value in row.items()
            if name.startswith("rss_mb:")
        }
        behind = row["feed_behind_s"]
        samples.append(
            Sample(float(row["t_s"]), row["phase"], memory, lag, float(behind) if behind else None)
        )
    return samples


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 2)


# -- verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryVerdict:
    process: str
    judged: bool  # False for the broker's JVM (see the module's docstring)
    at_warmup_mb: float | None
    at_end_mb: float | None
    max_mb: float | None

    @property
    def growth(self) -> float | None:
        if self.at_warmup_mb is None or self.at_end_mb is None or not self.at_warmup_mb:
            return None
        return self.at_end_mb / self.at_warmup_mb - 1


@dataclass(frozen=True)
class LagVerdict:
    stage: str
    max_s: float | None  # over the judged samples; None when there were none
    max_records: int | None
    at_t_s: float | None  # when the largest lag was seen


def _median_near(samples: Sequence[Sample], name: str, at: float) -> float | None:
    values = [v for s in samples if abs(s.t_s - at) <= RSS_SPAN_S / 2 and (v := s.rss_mb.get(name))]
    return statistics.median(values) if values else None


def memory_verdicts(
    samples: Sequence[Sample], warmup_s: float, feed_end_s: float
) -> list[MemoryVerdict]:
    """RSS per process at the warm-up mark and at the end of the feed: the median of the
    samples within ``RSS_SPAN_S`` around the mark, and of the last ``RSS_SPAN_S`` of feed."""
    feed = [s for s in samples if s.phase == "feed"]
    names = list(dict.fromkeys(name for s in samples for name in s.rss_mb))
    verdicts = []
    for name in names:
        tail = [v for s in feed if s.t_s >= feed_end_s - RSS_SPAN_S and (v := s.rss_mb.get(name))]
        seen = [v for s in feed if (v := s.rss_mb.get(name))]
        verdicts.append(
            MemoryVerdict(
                process=name,
                judged=name != BROKER,
                at_warmup_mb=_median_near(feed, name, warmup_s),
                at_end_mb=statistics.median(tail) if tail else None,
                max_mb=max(seen) if seen else None,
            )
        )
    return verdicts


def lag_verdicts(samples: Sequence[Sample], grace_s: float) -> list[LagVerdict]:
    judged = [s for s in samples if s.t_s >= grace_s and s.lag]
    verdicts = []
    for spec in STAGES:
        seen = [(s.lag[spec.name], s.t_s) for s in judged if spec.name in s.lag]
        if not seen:
            verdicts.append(LagVerdict(spec.name, None, None, None))
            continue
        worst, at = max(seen, key=lambda pair: pair[0].seconds)
        records = max(lag.records for lag, _ in seen)
        verdicts.append(LagVerdict(spec.name, round(worst.seconds, 3), records, at))
    return verdicts


@dataclass(frozen=True)
class Mismatch:
    key: str
    window: str  # the window size, e.g. "15m"
    expected: int
    counted: int


@dataclass(frozen=True)
class Reconciliation:
    emitted: int  # stories the feed made, copies included
    copies: int  # of them, re-polled copies of earlier stories (to be dropped)
    near: int  # of them, rewrites of earlier stories (to be kept, and chained)
    dropped: int  # by the ingest's exact dedup
    sent: int  # by the ingest, to news.raw
    dead: int  # the ingest's dead letters
    scored: int  # stories in the store (the router's upserts)
    counted: dict[str, int]  # stories in the "overall" windows, by window size
    series_keys: int  # distinct series keys with windows
    open_windows: int  # windows not final after the close (should be none)
    dead_letters: dict[str, int]  # on news.dlq, by stage and kind
    chained: dict[str, int]  # kept stories joined to a chain, by what the generator made them
    mismatches: list[Mismatch]  # (key, window size) whose count is not the expected one
    problems: list[str]  # every other way the counts do not add up

    @property
    def exact(self) -> bool:
        return not self.mismatches and not self.problems


def _size_label(seconds: int, specs: Iterable[WindowSpec]) -> str:
    for spec in specs:
        if int(spec.size.total_seconds()) == seconds:
            return spec.name
    return f"{seconds}s"


def reconcile(
    store: Store, settings: Settings, feed: FeedReport, dead_letters: Mapping[str, int]
) -> Reconciliation:
    """The windows' counts against what went in, exactly.

    What "exact" means here, from the code: the ingest drops exact duplicates only (same
    canonical URL, or same normalized title within the dedup horizon) and keeps
    near-duplicates, chained; every kept story is scored once and stored once (the router
    upserts by id and fans out only new ones); the router fans each story out to ``overall``,
    ``topic:<its topic>``, ``source:<its outlet>`` and ``ticker:<each ticker>``; the aggregator
    counts each story id once per window, in every window of every size that covers its event
    time (a hopping size ``size/hop`` times), and a story later than the allowed lateness goes
    to ``news.dlq`` uncounted. So, for each window size, the sum of a key's window counts must
    equal (size/hop times) the stories the generator made for that key, copies left out; the
    topics, which only the model decides, must add up to every story and match the stored
    stories' topics one by one; and nothing may be left open or dead-lettered.
    """
    problems: list[str] = []
    copies = feed.emitted.get("exact", 0)
    emitted = sum(feed.emitted.values())
    kept = emitted - copies
    if feed.duplicates != copies:
        problems.append(f"the ingest dropped {feed.duplicates} stories; {copies} were copies")
    if feed.sent != kept:
        problems.append(f"the ingest sent {feed.sent} stories; {kept} were not copies")
    if feed.dead:
        problems.append(f"the ingest dead-lettered {feed.dead} stories")
    if dead_letters:
        problems.append(
            f"news.dlq holds {sum(dead_letters.values())} records: {dict(dead_letters)}"
        )
    with store.engine.connect() as conn:
        scored = int(conn.execute(select(func.count()).select_from(scored_items)).scalar_one())
        by_topic = {
            f"topic:{topic}": int(n)
            for topic, n in conn.execute(
                select(scored_items.c.topic, func.count()).group_by(scored_items.c.topic)
            )
        }
        rows = conn.execute(
            select(
                windows.c.key,
                windows.c.size_seconds,
                func.sum(windows.c.count),
                func.sum(case((windows.c.final.is_(False), 1), else_=0)),
            ).group_by(windows.c.key, windows.c.size_seconds)
        ).all()
    if scored != kept:
        problems.append(f"the store holds {scored} scored stories; {kept} were sent")
    expected = {**feed.expected, **by_topic}
    if sum(by_topic.values()) != feed.expected.get("overall", 0):
        problems.append(
            f"the stored stories' topics add up to {sum(by_topic.values())}, "
            f"not {feed.expected.get('overall', 0)}"
        )
    specs = settings.window_specs
    factors: dict[int, int | None] = {}
    for spec in specs:
        size = int(spec.size.total_seconds())
        hop = int(spec.hop.total_seconds())
        # Two specs of one size share their windows where their starts meet: not countable.
        factors[size] = None if size in factors or size % hop else size // hop
    counted: dict[tuple[str, int], int] = {}
    open_windows = 0
    for key, size, total, not_final in rows:
        counted[(str(key), int(size))] = int(total or 0)
        open_windows += int(not_final or 0)
    if open_windows:
        problems.append(f"{open_windows} windows are not final after the close")
    mismatches = []
    for size, factor in factors.items():
        label = _size_label(size, specs)
        if factor is None:
            problems.append(f"windows of {label} are shared by two specs: not reconciled")
            continue
        keys = set(expected) | {k for k, s in counted if s == size}
        for key in sorted(keys):
            want = expected.get(key, 0) * factor
            got = counted.get((key, size), 0)
            if want != got:
                mismatches.append(Mismatch(key, label, want, got))
    unknown = {k for k, _ in counted} - set(expected)
    if unknown:
        problems.append(f"{len(unknown)} series keys nobody made: {sorted(unknown)[:10]}")
    return Reconciliation(
        emitted=emitted,
        copies=copies,
        near=feed.emitted.get("near", 0),
        dropped=feed.duplicates,
        sent=feed.sent,
        dead=feed.dead,
        scored=scored,
        counted={  # in the order of the window specs
            _size_label(size, specs): counted[("overall", size)]
            for size in factors
            if ("overall", size) in counted
        },
        series_keys=len({k for k, _ in counted}),
        open_windows=open_windows,
        dead_letters=dict(dead_letters),
        chained=dict(feed.chained),
        mismatches=mismatches,
        problems=problems,
    )


@dataclass(frozen=True)
class SoakResult:
    request: SoakRequest
    samples: list[Sample]
    feed_end_s: float
    feed_backlog_s: float | None  # the feed's worst backlog against its schedule
    feed_seconds: float  # how long the feed took to send every story
    memory: list[MemoryVerdict]
    lag: list[LagVerdict]
    reconciliation: Reconciliation
    samples_path: Path
    summary_path: Path
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def feed_backlog(samples: Sequence[Sample], grace_s: float) -> float | None:
    """How far (s) the feed fell behind its schedule at worst after the grace: a feed that
    cannot hold the rate makes the run say nothing about the rate."""
    behind = [s.feed_behind_s for s in samples if s.t_s >= grace_s and s.feed_behind_s is not None]
    return max(behind) if behind else None


def judge(
    request: SoakRequest,
    memory: Sequence[MemoryVerdict],
    lag: Sequence[LagVerdict],
    reconciliation: Reconciliation,
    backlog_s: float | None = None,
) -> list[str]:
    """Every way the run failed the three rules (and the feed its rate), one line each;
    empty when it passed."""
    failures = []
    if backlog_s is not None and backlog_s >= request.lag_limit_s:
        failures.append(
            f"the feed fell {backlog_s:.1f} s behind its schedule: {request.rate:g}/s not held"
        )
    for m in memory:
        if not m.judged:
            continue
        growth = m.growth
        if growth is None:
            failures.append(f"RSS of {m.process}: no samples at the warm-up mark or the end")
        elif growth >= request.rss_growth_limit:
            failures.append(
                f"RSS of {m.process} grew {100 * growth:.1f}% after the warm-up "
                f"({m.at_warmup_mb:.0f} -> {m.at_end_mb:.0f} MiB; "
                f"limit {100 * request.rss_growth_limit:g}%)"
            )
    for v in lag:
        if v.max_s is None:
            failures.append(f"lag of {v.stage}: no samples after the start-up grace")
        elif v.max_s >= request.lag_limit_s:
            failures.append(
                f"lag of {v.stage} reached {v.max_s:.1f} s at {v.at_t_s:.0f} s "
                f"(limit {request.lag_limit_s:g} s)"
            )
    if not reconciliation.exact:
        failures.append(
            f"reconciliation: {len(reconciliation.mismatches)} (key, window) counts differ"
            + "".join(f"; {p}" for p in reconciliation.problems)
        )
    return failures


# -- the run ------------------------------------------------------------------------------


def soak_settings(settings: Settings, run_id: str, work: Path) -> Settings:
    """The live settings, isolated as a backtest's are: the run's own topics, consumer
    groups, store and dedup memory. Everything that shapes the work stays live (windows,
    running updates, alert rules, the promoted model, batch sizes)."""
    return settings.model_copy(
        update={
            "topic_prefix": f"soak-{run_id}.",  # also names the consumer groups
            "store_url": f"sqlite:///{work / 'store.db'}",
            "ingest_state_url": f"sqlite:///{work / 'ingest.db'}",
            "metrics_port": 0,  # never the live stages' ports
            "instance_id": "",
        }
    )


def run_soak(
    settings: Settings,
    request: SoakRequest,
    stop: threading.Event,
    *,
    broker_pid: int | None = None,
    say: Callable[[str], None] = log.info,
) -> SoakResult:
    """The whole soak over the broker ``settings`` name (running already); ``broker_pid``:
    its JVM, sampled for RSS. Raises ``SoakError`` when it cannot reach a verdict."""
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = request.out_dir
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    run = soak_settings(settings, run_id, work)
    ensure_topics(run)
    store = Store(run.database_url)
    children = Supervisor({**os.environ, **run.child_env(), "PYTHONUNBUFFERED": "1"}, out / "logs")
    probe: LagProbe | None = None
    sampler: Sampler | None = None
    passed = False
    try:
        for spec in STAGES:
            children.start(spec.name, finsent_command(spec.name))
        _wait_ready(run, children, stop, request.ready_timeout_s, say)
        plan = FeedPlan(
            stories=request.stories,
            rate=request.rate,
            tick_s=request.tick_s,
            shape=request.shape,
            status_path=work / "feed-status.json",
            result_path=work / "feed-result.json",
        )
        probe = LagProbe(run, store)

        def pids() -> dict[str, int]:
            found = {name: p.pid for name, p in children.procs.items()}
            if broker_pid is not None:
                found[BROKER] = broker_pid
            return found

        children.start(FEED, feed_command(plan.write(work / "feed-plan.json")), one_shot=True)
        sampler = Sampler(probe, pids, plan.status_path, request.sample_every_s)
        sampler.start()
        say(
            f"feed started: {request.stories:,} stories at {request.rate:g}/s "
            f"({request.minutes:g} min); samples every {request.sample_every_s:g} s"
        )
        feed_process = children.procs[FEED]
        last_said = time.monotonic()
        while feed_process.poll() is None:
            _check_alive(children, stop)
            if time.monotonic() - last_said >= 60:
                say(_progress(sampler))
                last_said = time.monotonic()
            time.sleep(0.5)
        feed_end_s = round(time.monotonic() - sampler.started, 2)
        if feed_process.returncode != 0 or not plan.result_path.exists():
            raise SoakError(
                f"the feed exited with code {feed_process.returncode}; its log ends:\n"
                f"{children.log_tail(FEED)}"
            )
        sampler.phase = "drain"
        say(f"feed done after {feed_end_s:.0f} s; draining")
        _wait_drained(sampler, children, stop, request.drain_timeout_s)
        sampler.done.set()
        sampler.join()
        say("drained; closing the windows left open")
        from finsent.app.backtest import close_open_windows  # the backtest's end of feed

        children.stop_one("aggregator")
        close_open_windows(run, store, datetime.now(UTC))
        children.stop_all()
        feed = FeedReport.read(plan.result_path)
        reconciliation = reconcile(store, run, feed, probe.dead_letters())
        memory = memory_verdicts(sampler.samples, request.warmup_minutes * 60, feed_end_s)
        lag = lag_verdicts(sampler.samples, request.startup_grace_s)
        backlog = feed_backlog(sampler.samples, request.startup_grace_s)
        failures = judge(request, memory, lag, reconciliation, backlog)
        samples_path = write_samples(sampler.samples, out / "samples.csv")
        result = SoakResult(
            request=request,
            samples=sampler.samples,
            feed_end_s=feed_end_s,
            feed_backlog_s=backlog,
            feed_seconds=feed.seconds,
            memory=memory,
            lag=lag,
            reconciliation=reconciliation,
            samples_path=samples_path,
            summary_path=out / "summary.json",
            failures=failures,
        )
        write_summary(result)
        passed = result.passed
        return result
    finally:
        if sampler is not None:
            sampler.done.set()
            sampler.join(timeout=30)
        children.stop_all()
        if probe is not None:
            probe.close()
        store.close()
        _delete_run(run)
        if passed and not request.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _check_alive(children: Supervisor, stop: threading.Event) -> None:
    if stop.is_set():
        raise SoakError("stopped")
    for name, code in children.dead():
        raise SoakError(f"{name} exited (code {code}); its log ends:\n{children.log_tail(name)}")


def _wait_ready(
    settings: Settings,
    children: Supervisor,
    stop: threading.Event,
    timeout_s: float,
    say: Callable[[str], None],
) -> None:
    """Until every stage has joined its consumer group (the scorer once its model is loaded)."""
    names = [spec.name for spec in STAGES]
    deadline = time.monotonic() + timeout_s
    while True:
        _check_alive(children, stop)
        joined = active_groups(settings, names)
        if all(joined.get(name) for name in names):
            say(f"every stage joined its group: {', '.join(names)}")
            return
        if time.monotonic() > deadline:
            missing = [n for n in names if not joined.get(n)]
            raise SoakError(f"not in their groups after {timeout_s:g} s: {', '.join(missing)}")
        time.sleep(1.0)


def _wait_drained(
    sampler: Sampler, children: Supervisor, stop: threading.Event, timeout_s: float
) -> None:
    """Until ``DRAIN_CLEAN_SAMPLES`` samples in a row, all taken after the feed ended, show no
    stage behind."""
    first = len(sampler.samples)
    deadline = time.monotonic() + timeout_s
    while True:
        _check_alive(children, stop)
        recent = sampler.samples[first:][-DRAIN_CLEAN_SAMPLES:]
        if len(recent) == DRAIN_CLEAN_SAMPLES and all(
            s.lag and all(lag.records == 0 for lag in s.lag.values()) for s in recent
        ):
            return
        if time.monotonic() > deadline:
            last = sampler.samples[-1].lag if sampler.samples else {}
            behind = {name: lag.records for name, lag in last.items() if lag.records}
            raise SoakError(f"not drained after {timeout_s:g} s; still behind: {behind}")
        time.sleep(0.5)


def _progress(sampler: Sampler) -> str:
    if not sampler.samples:
        return "no samples yet"
    s = sampler.samples[-1]
    lags = ", ".join(f"{name} {lag.seconds:.1f}s" for name, lag in s.lag.items())
    memory = ", ".join(f"{name} {mb:.0f}" for name, mb in s.rss_mb.items() if mb is not None)
    return f"t={s.t_s:.0f}s lag: {lags or 'n/a'} | RSS MiB: {memory}"


def _delete_run(settings: Settings) -> None:
    """The run's topics and consumer groups, gone (their members have left)."""
    from kafka import KafkaAdminClient

    with contextlib.suppress(Exception):
        delete_topics(settings, [settings.topic(name) for name in TOPIC_NAMES])
    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id="finsent-soak"
        )
        try:
            admin.delete_consumer_groups([group_id(settings, spec.name) for spec in STAGES])
        finally:
            admin.close()


# -- the summary --------------------------------------------------------------------------


def summary_data(result: SoakResult) -> dict[str, Any]:
    """Everything the summary says, as JSON-ready data."""
    r = result.request
    return {
        "passed": result.passed,
        "failures": result.failures,
        "request": {
            "minutes": r.minutes,
            "rate": r.rate,
            "warmup_minutes": r.warmup_minutes,
            "sample_every_s": r.sample_every_s,
            "startup_grace_s": r.startup_grace_s,
            "lag_limit_s": r.lag_limit_s,
            "rss_growth_limit": r.rss_growth_limit,
            "shape": asdict(r.shape),
        },
        "feed_end_s": result.feed_end_s,
        "feed_backlog_s": result.feed_backlog_s,
        "feed_seconds": result.feed_seconds,
        "samples": len(result.samples),
        "memory": [{**asdict(m), "growth": m.growth} for m in result.memory],
        "lag": [asdict(v) for v in result.lag],
        "reconciliation": {**asdict(result.reconciliation), "exact": result.reconciliation.exact},
        "python": sys.version.split()[0],
    }


def write_summary(result: SoakResult) -> Path:
    result.summary_path.write_text(json.dumps(summary_data(result), indent=2), encoding="utf-8")
    return result.summary_path


def format_summary(result: SoakResult) -> str:
    """The summary as plain text tables: memory per process, lag per stage, the counts."""
    r = result.request
    rec = result.reconciliation
    lines = [
        f"soak: {r.minutes:g} min at {r.rate:g} stories/s, warm-up {r.warmup_minutes:g} min, "
        f"{len(result.samples)} samples",
        "",
        f"RSS (MiB; median within {RSS_SPAN_S:g} s of each mark; limit "
        f"{100 * r.rss_growth_limit:g}% growth)",
        f"  {'process':22} {'at warm-up':>10} {'at end':>8} {'growth':>8} {'max':>8}",
    ]
    for m in result.memory:
        growth = "n/a" if m.growth is None else f"{100 * m.growth:+.1f}%"
        verdict = "" if m.judged else "  (reported, not judged)"
        lines.append(
            f"  {m.process:22} {_mb(m.at_warmup_mb):>10} {_mb(m.at_end_mb):>8} {growth:>8} "
            f"{_mb(m.max_mb):>8}{verdict}"
        )
    lines += [
        "",
        f"consumer lag (after {r.startup_grace_s:g} s of grace; limit {r.lag_limit_s:g} s; "
        "seconds: age of the oldest unconsumed record)",
        f"  {'stage':22} {'max s':>8} {'max records':>12} {'at s':>8}",
    ]
    for v in result.lag:
        lines.append(
            f"  {v.stage:22} {_num(v.max_s, '.2f'):>8} {_num(v.max_records, ','):>12} "
            f"{_num(v.at_t_s, '.0f'):>8}"
        )
    near_chained = rec.chained.get("near", 0)
    rate = rec.emitted / result.feed_seconds if result.feed_seconds else 0.0
    lines += [
        "",
        "stories",
        f"  the feed: {rate:.1f} stories/s over {result.feed_seconds:.0f} s; worst backlog "
        f"against its schedule {_num(result.feed_backlog_s, '.2f')} s",
        f"  made {rec.emitted:,} ({rec.near:,} near-duplicates, {rec.copies:,} re-polled copies); "
        f"dropped by dedup {rec.dropped:,}; sent {rec.sent:,}; scored and stored {rec.scored:,}",
        "  counted in the overall windows: "
        + ", ".join(f"{size} {n:,}" for size, n in rec.counted.items()),
        f"  series keys with windows: {rec.series_keys:,}; dead letters: "
        f"{sum(rec.dead_letters.values())}",
        f"  near-duplicates chained: {near_chained:,} of {rec.near:,}"
        f" ({_share(near_chained, rec.near)}); originals chained: "
        f"{rec.chained.get('original', 0):,} (a rewrite published before its original "
        "starts the chain)",
        f"  reconciliation: {'exact' if rec.exact else 'MISMATCH'}",
    ]
    for miss in rec.mismatches[:20]:
        lines.append(
            f"    {miss.key} ({miss.window}): expected {miss.expected}, counted {miss.counted}"
        )
    if len(rec.mismatches) > 20:
        lines.append(f"    ... and {len(rec.mismatches) - 20} more (summary.json)")
    lines += [f"    {p}" for p in rec.problems]
    lines += ["", "PASS" if result.passed else "FAIL"]
    lines += [f"  {f}" for f in result.failures]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _num(value: float | int | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _share(part: int, whole: int) -> str:
    return "n/a" if not whole else f"{100 * part / whole:.1f}%"
