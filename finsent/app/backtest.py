"""`finsent backtest`: replay a historical feed through the live stages, then report.

The run gets its own topics (a run prefix), its own store, its own dedup memory and its own
consumer groups, so it never touches the live pipeline. The stages are the production ones,
each in its own process (`finsent scorer`, `router`, `aggregator`, `alerter`); the driver only
feeds them, watches their offsets until the feed is drained, and closes the windows still open
at the end of the feed (the live path closes those when later news arrives).

Determinism: news.raw and news.scored get one partition, so every stage sees the stories in
the feed's publish-time order; the scorer is batch-invariant (model/infer.py) and the windows
and alerts are functions of event time. The same feed and settings give the same alerts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from finsent.app.backtest_report import (
    EventsFile,
    ReportInput,
    fired_alerts,
    first_stories,
    load_events,
    write_report,
)
from finsent.app.kafka_local import LocalKafka
from finsent.app.launch import finsent_command
from finsent.app.ports import port_open
from finsent.app.supervisor import Supervisor
from finsent.core.durations import EPOCH
from finsent.core.records import Alert, decode
from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.core.stages import Checkpoint, StageSpec, consumers
from finsent.core.stages import stage as stage_spec
from finsent.runtime.kafka_io import (
    KafkaConfig,
    check_broker,
    delete_topics,
    ensure_topics,
    group_id,
    make_producer,
)
from finsent.runtime.store import Store, alert_events, as_utc, scored_items, windows

log = logging.getLogger(__name__)
# The consuming stages that feed topics: not the notifier, whose outputs leave the system (a
# replay pages no one). The replay driver stands in for ingest.
RUN_STAGES: tuple[StageSpec, ...] = tuple(spec for spec in consumers() if spec.sink is not None)
STAGES = tuple(spec.name for spec in RUN_STAGES)
# Single-partition topics keep the feed's order end to end; see the module docstring.
ORDERED_TOPICS = {"news.raw": 1, "news.scored": 1}
SERIES_WINDOW = "1d"  # the report's topic series, when the run has daily windows


class BacktestError(RuntimeError):
    pass


@dataclass(frozen=True)
class BacktestRequest:
    feed: Path
    since: datetime | None = None
    until: datetime | None = None
    speed: float | None = None  # None: as fast as the stages go
    run_id: str = ""  # empty: made from the time and the feed
    report_dir: Path | None = None  # None: <cache>/backtests/<run>/report
    events: Path | None = None
    keep_topics: bool = False
    stall_timeout_s: float = 300.0  # a stage that makes no progress for this long fails the run
    model: str | None = None  # a registered model version; None: the one the scorers run now


@dataclass
class BacktestResult:
    run_id: str
    run_dir: Path
    report_path: Path
    alerts: list[Alert]
    stories: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)


def parse_period(
    from_text: str | None, to_text: str | None
) -> tuple[datetime | None, datetime | None]:
    """The UTC period of ``--from`` and ``--to``: ISO dates or times, naive ones in UTC.

    A bare date means the start of its day, except for ``--to``, where it includes its day
    (``--to 2023-03-31`` ends at April 1, 00:00). Either end may be None (open). Raises
    ``BacktestError``, naming the option, for text that is not ISO or an empty period.
    """
    since = _period_bound(from_text, "--from", whole_day=False)
    until = _period_bound(to_text, "--to", whole_day=True)
    if since is not None and until is not None and since >= until:
        raise BacktestError(
            f"--from ({since.isoformat()}) must be before --to ({until.isoformat()})"
        )
    return since, until


def _period_bound(text: str | None, option: str, *, whole_day: bool) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BacktestError(
            f"{option} takes an ISO date or time (2023-03-01, 2023-03-01T12:00Z), not {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if whole_day and _is_bare_date(text):
        value += timedelta(days=1)
    return value.astimezone(UTC)


def _is_bare_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def make_run_id(feed: Path, at: datetime) -> str:
    digest = hashlib.sha256(str(feed.resolve()).encode()).hexdigest()[:6]
    return f"{at:%Y%m%d-%H%M%S}-{digest}"


def backtest_settings(settings: Settings, run_id: str, run_dir: Path) -> Settings:
    """The live settings, isolated: the run's own topics, store, dedup memory and groups.

    Windows and alert rules stay as configured: a backtest answers "what would the live
    pipeline have said". Only what would break isolation or determinism is overridden.
    """
    return settings.model_copy(
        update={
            "topic_prefix": f"backtest-{run_id}.",  # also names the consumer groups
            "store_url": f"sqlite:///{run_dir / 'store.db'}",
            "ingest_state_url": f"sqlite:///{run_dir / 'ingest.db'}",
            "partitions_per_topic": {**settings.partitions_per_topic, **ORDERED_TOPICS},
            "idle_close_seconds": 0.0,  # wall-clock idleness means nothing in a replay
            # A feed's gaps are not a live series going quiet; keeps reports comparable.
            "alert_no_data_windows": 0,
            "retention_days": 0.0,  # a replay's news is old by design; the run's store is its own
            "window_emit": "final",  # running updates are for live views only
            "model_batch_invariant": True,
            "metrics_port": 0,  # never the live stages' ports
            "instance_id": "",
        }
    )


def pin_model(settings: Settings, version: str | None) -> tuple[Settings, str | None]:
    """The run's settings with its model pinned, and the model's version: ``version`` from
    the live store's registry, else the one the live scorers run now. A run then scores with
    one model from start to end, and can be re-run as it was with ``--model``."""
    if settings.scorer != "attention":
        return settings, None
    if version is None and not settings.model_follow_registry:
        from finsent.model.artifact import read_artifact

        return settings, read_artifact(settings.model_artifact).version
    from finsent.model.registry import ModelRegistry, RegistryConfig

    live = Store(settings.database_url)
    try:
        registry = ModelRegistry(live, RegistryConfig.from_settings(settings))
        version = version or registry.active_version()
        path = registry.path_of(version)
    finally:
        live.close()
    pinned = {"model_artifact": path, "model_follow_registry": False}
    return settings.model_copy(update=pinned), version


def _changed_params(settings: Settings, request: BacktestRequest) -> dict[str, Any]:
    """What identifies the run: its options and the settings that shape alerts."""
    shaping = (
        "scorer", "model_backend", "windows", "grace_seconds", "allowed_lateness_seconds",
        "alert_keys", "alert_scales", "alert_half_life", "alert_fire_z", "alert_resolve_z",
        "alert_min_count", "alert_min_ratio", "alert_floor", "alert_share_z", "alert_window",
        "dedup_horizon_hours",
    )  # fmt: skip
    params: dict[str, Any] = {
        "from": request.since.isoformat() if request.since else None,
        "to": request.until.isoformat() if request.until else None,
        "speed": "max" if request.speed is None else request.speed,
        "events": str(request.events) if request.events else None,
    }
    for name in shaping:
        value = getattr(settings, name)
        params[name] = ",".join(value) if isinstance(value, tuple) else value
    if settings.alert_rules_file is not None:
        params["alert_rules_file"] = str(settings.alert_rules_file)
    return {k: v for k, v in params.items() if v is not None}


class Offsets:
    """Where each stage stands: end offsets from Kafka, consumed offsets from where each stage
    declares it keeps them (its checkpoint: its Kafka group, or the run's store)."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.settings = settings
        self.store = store
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id="finsent-backtest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self.admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id="finsent-backtest"
        )

    def end(self, topic: str) -> int:
        from kafka.structs import TopicPartition

        name = self.settings.topic(topic)
        parts = self.consumer.partitions_for_topic(name) or set()
        ends = self.consumer.end_offsets([TopicPartition(name, p) for p in parts])
        return sum(int(v) for v in ends.values())

    def consumed(self, stage: str) -> int:
        checkpoint = stage_spec(stage).checkpoint
        if checkpoint is Checkpoint.KAFKA:
            from kafka.errors import KafkaError

            try:
                committed = self.admin.list_consumer_group_offsets(group_id(self.settings, stage))
            except KafkaError:  # the group coordinator is still starting: nothing committed
                return 0
            return sum(max(int(m.offset), 0) for m in committed.values())
        if checkpoint is not Checkpoint.STORE:
            raise ValueError(f"stage {stage} consumes no topic")
        if self.store is None:
            raise ValueError(f"stage {stage} keeps its offsets in the store: pass one")
        return sum(self.store.load_offsets(stage).values())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self.admin.close()


def close_open_windows(settings: Settings, store: Store, now: datetime) -> int:
    """End of the feed: close every window the (stopped) aggregator left open, with the
    aggregator's own code, and hand them on as it would have; returns how many."""
    from finsent.runtime.runner import send_all
    from finsent.stream.aggregation import STAGE, Aggregator, AggregatorConfig

    logic = Aggregator(AggregatorConfig.from_settings(settings), store)
    topic = settings.topic("news.keyed")
    logic.assigned(sorted(p for p in store.load_offsets(STAGE) if p[0] == topic))
    outputs, commit = logic.close_all(now)
    if commit is None:
        return 0
    producer = make_producer(KafkaConfig.from_settings(settings))
    try:  # downstream first, then the store: the order of the stage loop
        send_all(producer, settings.topic("sentiment.windows"), outputs)
    finally:
        producer.close()
    store.commit(commit)
    return len(outputs)


def run_alert_list(store: Store) -> list[Alert]:
    """Every alert lifecycle event the run stored, as records."""
    import json

    rows = store.query(alert_events)
    return [decode(Alert, json.dumps(row["payload"])) for row in rows]


def story_times(
    store: Store,
) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, str]]]:
    """The run's first and last story, and (published at, title) of its negative stories."""
    rows = store.query(scored_items)
    times = [as_utc(r["published_at"]) for r in rows]
    period = (min(times), max(times)) if times else None
    negatives = [
        (as_utc(r["published_at"]), r["title"]) for r in rows if r["sentiment"] == "negative"
    ]
    return period, negatives


def topic_series(store: Store, settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """The topic series for the report: daily windows when configured, else the longest."""
    specs = settings.window_specs
    tumbling = [s for s in specs if s.hop == s.size] or list(specs)
    spec = next((s for s in tumbling if s.name == SERIES_WINDOW), max(tumbling))
    rows = store.query(
        windows,
        windows.c.key.like("topic:%"),
        order_by=[windows.c.key, windows.c.window_start],
    )
    series = [
        {
            "key": r["key"],
            "window_start": as_utc(r["window_start"]).isoformat(),
            "window_end": as_utc(r["window_end"]).isoformat(),
            "count": r["count"],
            "mean_score": r["mean_score"],
            "neg_share": r["neg_share"],
            "weighted_neg_share": r["weighted_neg_share"],
        }
        for r in rows
        if as_utc(r["window_end"]) - as_utc(r["window_start"]) == spec.size
        and (as_utc(r["window_start"]) - EPOCH) % spec.hop == timedelta(0)
    ]
    return spec.name, series


class _Bars:
    """The run's progress: one bar per step, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            refresh_per_second=4,
        )
        self.tasks: dict[str, Any] = {}

    def update(self, name: str, done: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def run_backtest(
    settings: Settings,
    request: BacktestRequest,
    stop: threading.Event,
    progress: bool = True,
) -> BacktestResult:
    from finsent.ingest.replay import replay

    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    if not request.feed.exists():
        raise BacktestError(f"feed {request.feed} does not exist")
    events: EventsFile | None = load_events(request.events) if request.events else None
    run_id = request.run_id or make_run_id(request.feed, started_at)
    run_dir = settings.cache_dir / "backtests" / run_id
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BacktestError(f"run {run_id} exists already ({run_dir}); pick another --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir = request.report_dir or run_dir / "report"
    settings, model_version = pin_model(settings, request.model)
    bt = backtest_settings(settings, run_id, run_dir)
    registry = Store(settings.backtest_registry_database_url)
    row: dict[str, Any] = {
        "id": run_id,
        "started_at": started_at,
        "finished_at": None,
        "feed": str(request.feed),
        "params": {**_changed_params(bt, request), "model_version": model_version},
        "report_path": None,
        "alert_count": None,
        "status": "running",
    }
    registry.save_backtest_run(row)
    kafka = LocalKafka(settings)
    started_kafka = False
    store: Store | None = None
    children = Supervisor(
        {**os.environ, **bt.child_env(), "PYTHONUNBUFFERED": "1"}, run_dir / "logs"
    )
    phases: dict[str, float] = {}
    bars = _Bars(progress)
    try:
        # The project's broker, unless one already listens (a live one, or a test's).
        if not settings.kafka_bootstrap and not port_open(settings.kafka_host, settings.kafka_port):
            kafka.start()
            started_kafka = True
        phases["kafka"] = round(time.perf_counter() - t0, 2)
        check_broker(bt.bootstrap_servers)  # a remote FINSENT_KAFKA_BOOTSTRAP that is down
        ensure_topics(bt)
        store = Store(bt.database_url)
        for stage in STAGES:
            children.start(stage, finsent_command(stage))
        with bars.progress:
            stats = replay(
                bt,
                request.feed,
                stop,
                speed=request.speed,
                progress=False,
                since=request.since,
                until=request.until,
                on_progress=lambda n, total: bars.update("ingest → news.raw", n, total),
            )
            if stop.is_set():
                raise BacktestError("stopped before the feed was replayed")
            bars.update("ingest → news.raw", stats.sent, stats.sent)
            phases["replay"] = round(time.perf_counter() - t0, 2)
            offsets = Offsets(bt, store)
            try:
                drain = _Drain(offsets, children, stop, bars, request.stall_timeout_s)
                for spec in RUN_STAGES:  # in pipeline order: each drains what the last fed it
                    source = spec.source or ""
                    # The replayed stories must be on news.raw before it can look drained.
                    at_least = stats.sent if source == "news.raw" else 0
                    drain.until_caught_up(spec.name, source, f"{spec.name} ← {source}", at_least)
                    if spec.name == "aggregator":
                        phases["aggregated"] = round(time.perf_counter() - t0, 2)
                        children.stop_one(spec.name)
                        closed = close_open_windows(bt, store, datetime.now(UTC))
                        log.info("closed %d windows left open at the end of the feed", closed)
                phases["alerted"] = round(time.perf_counter() - t0, 2)
            finally:
                offsets.close()
        children.stop_all()
        alerts = run_alert_list(store)
        series_window, series = topic_series(store, bt)
        stories = store.count(scored_items)
        period, negatives = story_times(store)
        seconds = round(time.perf_counter() - t0, 2)
        replay_stats = asdict(stats)
        report_path = write_report(
            ReportInput(
                run_id=run_id,
                feed=str(request.feed),
                alerts=alerts,
                series=series,
                series_window=series_window,
                events=events,
                first_stories=first_stories(events.events, negatives) if events else {},
                period=period,
                summary={
                    "stories": stories,
                    "seconds": seconds,
                    "phases_s": phases,
                    "replay": replay_stats,
                    "params": row["params"],
                    "store": bt.database_url,
                },
            ),
            report_dir,
        )
        registry.save_backtest_run(
            {
                **row,
                "finished_at": datetime.now(UTC),
                "report_path": str(report_path),
                "alert_count": len(fired_alerts(alerts)),
                "status": "finished",
            }
        )
        return BacktestResult(
            run_id=run_id,
            run_dir=run_dir,
            report_path=report_path,
            alerts=alerts,
            stories=stories,
            seconds=seconds,
            phases=phases,
            replay=replay_stats,
        )
    except BaseException:
        registry.save_backtest_run({**row, "finished_at": datetime.now(UTC), "status": "failed"})
        raise
    finally:
        children.stop_all()
        if not request.keep_topics:
            with contextlib.suppress(Exception):
                delete_topics(bt, [bt.topic(name) for name in TOPIC_NAMES])
            _delete_groups(bt)
        if started_kafka:
            kafka.stop()
        if store is not None:
            store.close()
        registry.close()


def _delete_groups(settings: Settings) -> None:
    """Forget the run's consumer groups (their members have left) once its topics are gone."""
    from kafka import KafkaAdminClient

    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id="finsent-backtest"
        )
        try:
            admin.delete_consumer_groups([group_id(settings, stage) for stage in STAGES])
        finally:
            admin.close()


class _Drain:
    """Waits for one stage to consume everything upstream produced, failing fast when a stage
    dies or stalls."""

    def __init__(
        self,
        offsets: Offsets,
        children: Supervisor,
        stop: threading.Event,
        bars: _Bars,
        stall_timeout_s: float,
    ) -> None:
        self.offsets = offsets
        self.children = children
        self.stop = stop
        self.bars = bars
        self.stall_timeout_s = stall_timeout_s

    def until_caught_up(self, stage: str, source: str, label: str, at_least: int = 0) -> None:
        """``at_least``: what the source must hold before an empty-looking one counts as done
        (stale topic metadata reads as no partitions)."""
        last, last_change = -1, time.monotonic()
        while True:
            for name, code in self.children.dead():
                raise BacktestError(
                    f"stage {name} exited (code {code}); its log ends:\n"
                    f"{self.children.log_tail(name)}"
                )
            end = self.offsets.end(source)
            done = self.offsets.consumed(stage)
            self.bars.update(label, min(done, end), end)
            if done >= end >= at_least:
                return
            now = time.monotonic()
            if done != last:
                last, last_change = done, now
            elif now - last_change > self.stall_timeout_s:
                raise BacktestError(
                    f"{stage} made no progress for {self.stall_timeout_s:g}s at {done}/{end}; "
                    f"its log ends:\n{self.children.log_tail(stage)}"
                )
            if self.stop.wait(0.25):
                raise BacktestError("stopped before the feed was drained")
