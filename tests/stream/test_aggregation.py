"""The aggregator: its logic in process with the test kit (no broker), then its fault tests
against a real broker.

In process: windows close on the partition's watermark, late news within the allowed
lateness restates a closed window (and is audited), later news goes to the late path, a
redelivered point counts once, and partitions handed to other members carry on from the
state stored with their offsets, to the same final windows as one uninterrupted run.

Against a real broker (marked ``kafka``): scored stories go straight onto news.scored; the
router fans them out by series key and the aggregators window them. The reconciliation is
exact: for every (series, window), the count in the store equals the count in the input,
after a kill -9, with two aggregators in one group, and across a broker restart, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from support.records import T0 as STORY_T0
from support.records import keyed_point, scored_item
from support.stage_logic import aggregator, isolated_settings
from support.stages import StageProcesses, wait_until

from finsent.app.kafka_local import LocalKafka
from finsent.app.ports import free_port
from finsent.core.records import KeyedPoint, ScoredItem, SeriesPoint, WindowStat, decode, encode
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.runner import StageLoop
from finsent.runtime.store import Commit, Store, as_utc, late_items, scored_items, windows
from finsent.runtime.testing import (
    FAST_BACKOFF,
    CollectingSink,
    MemoryDeadLetters,
    MemorySource,
    Run,
    run_logic,
)
from finsent.stream.aggregation import repartition_state
from finsent.stream.windows import WindowSpec, series_keys

# -- in process ------------------------------------------------------------------------------

NOW = STORY_T0 + timedelta(days=1)  # the wall clock: event time alone closes these windows
M15 = timedelta(minutes=15)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return isolated_settings(
        tmp_path,
        windows=("15m",),
        grace_seconds=120,
        allowed_lateness_seconds=600,
        window_emit="final",
    )


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.database_url)


def point_at(minutes: float, point_id: str, key: str = "overall", **fields: Any) -> KeyedPoint:
    """A point of ``key`` published ``minutes`` after the first window's start."""
    return keyed_point(
        key, id=point_id, published_at=STORY_T0 + timedelta(minutes=minutes), **fields
    )


def aggregate(
    settings: Settings,
    store: Store,
    points: Sequence[KeyedPoint] | Mapping[int, Sequence[KeyedPoint]],
    batch_size: int = 64,
) -> Run:
    logic = aggregator(settings, store)
    return run_logic(logic, points, store, lambda: NOW, stage="aggregator", batch_size=batch_size)


def shape(stat: WindowStat) -> tuple[str, datetime, int, int, bool]:
    return stat.key, stat.window_start, stat.count, stat.version, stat.final


def stored_windows(store: Store) -> list[tuple[str, datetime, int, int]]:
    return sorted(
        (r["key"], as_utc(r["window_start"]), r["count"], r["version"])
        for r in store.query(windows)
    )


def test_a_window_closes_once_the_watermark_passes_its_end(
    settings: Settings, tmp_path: Path
) -> None:
    points = [point_at(1, "p1"), point_at(5, "p2"), point_at(16, "p3")]
    # The watermark is 16 min - 2 min of grace: short of the first window's end.
    early = aggregate(settings, Store(f"sqlite:///{tmp_path / 'early.db'}"), points)
    assert early.outputs == []

    store = Store(settings.database_url)
    run = aggregate(settings, store, [*points, point_at(18, "p4")], batch_size=1)

    [(key, stat)] = run.outputs
    assert key == "overall"
    assert shape(stat) == ("overall", STORY_T0, 2, 1, True)
    assert stat.window_end == STORY_T0 + M15 and stat.emitted_at == NOW
    assert stat.neg_share == 1.0 and stat.mean_score == -0.8  # two negative stories at -0.8
    assert stored_windows(store) == [("overall", STORY_T0, 2, 1)]
    assert run.offsets == {("news.keyed", 0): 4}


def test_late_news_within_the_allowed_lateness_restates_the_window(
    settings: Settings, store: Store
) -> None:
    late = point_at(10, "late", title="Late but in time")

    run = aggregate(settings, store, [point_at(1, "p1"), point_at(18, "p2"), late])

    assert [shape(stat) for _, stat in run.outputs] == [
        ("overall", STORY_T0, 1, 1, True),  # closed by p2
        ("overall", STORY_T0, 2, 2, True),  # restated by the late story: version 2
    ]
    assert stored_windows(store) == [("overall", STORY_T0, 2, 2)]
    [audit] = store.query(late_items)
    assert (audit["item_id"], audit["action"], audit["version"]) == ("late", "restated", 2)
    assert audit["title"] == "Late but in time"
    assert run.dead == []


def test_news_later_than_the_allowed_lateness_goes_to_the_late_path(
    settings: Settings, store: Store
) -> None:
    too_late = point_at(3, "too-late")

    # p2 moves the watermark to 38 min, past the first window's end + 10 min of lateness.
    run = aggregate(settings, store, [point_at(1, "p1"), point_at(40, "p2"), too_late])

    assert [shape(stat) for _, stat in run.outputs] == [("overall", STORY_T0, 1, 1, True)]
    [letter] = run.dead
    assert letter.reason == (
        "late: overall window 2026-03-10T14:30:00+00:00–2026-03-10T14:45:00+00:00 "
        "closed beyond the allowed lateness"
    )
    assert (letter.stage, letter.source_topic, letter.offset) == ("aggregator", "news.keyed", 2)
    assert decode(SeriesPoint, letter.payload()) == too_late.point  # the point itself, whole
    [audit] = store.query(late_items)
    assert (audit["item_id"], audit["action"], audit["version"]) == ("too-late", "too_late", 0)
    assert stored_windows(store) == [("overall", STORY_T0, 1, 1)]  # not restated


class JoiningSource(MemorySource):
    """Polls the way a kafka-python consumer does just after it (re)joined its group: the
    partitions are assigned, but the polls of the first ``empty_batches`` batches return
    nothing, and the partitions' ends are unknown until a fetch has returned."""

    def __init__(self, *args: Any, empty_batches: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.empty_batches = empty_batches

    def batch_done(self) -> None:
        self.empty_batches = max(self.empty_batches - 1, 0)

    def poll(  # type: ignore[override]
        self, timeout_ms: int = 0, max_records: int | None = None, update_offsets: bool = True
    ) -> dict[TopicPartition, list[Any]]:
        if self.empty_batches:
            if not self.assignment():
                self.rebalance()  # joins: the partitions are assigned, nothing is read
            return {}
        return super().poll(timeout_ms, max_records, update_offsets)

    def highwater(self, partition: TopicPartition) -> int | None:  # type: ignore[override]
        return None if self.empty_batches else super().highwater(partition)


def test_a_restart_with_a_backlog_closes_no_window_before_reading_it(
    settings: Settings, store: Store
) -> None:
    idle = settings.model_copy(update={"idle_close_seconds": 60.0})
    wall = NOW
    aggregate(idle, store, [point_at(1, "p1")])  # read at ``wall``; then the stage is down

    # Back an hour later (well past the idle close) with a backlog of the same window.
    backlog = [point_at(1, "p1"), point_at(4, "p2"), point_at(7, "p3"), point_at(30, "p4")]
    source = JoiningSource("news.keyed", {0: [encode(p) for p in backlog]}, empty_batches=2)
    source.committed = {("news.keyed", 0): 1}
    sink = CollectingSink()
    later = wall + timedelta(hours=1)
    loop = StageLoop(
        stage("aggregator"),
        aggregator(idle, store),
        consumer=source,
        producer=sink,
        dead=MemoryDeadLetters("aggregator"),
        store=store,
        sink_topic="sentiment.windows",
        max_batch=64,
        max_wait_ms=10,
        clock=lambda: later,
        backoff=FAST_BACKOFF,
    )
    joined = loop.step  # each batch, the first ones empty, brings the first fetch nearer

    def step(stop: threading.Event) -> None:
        joined(stop)
        source.batch_done()

    loop.step = step  # type: ignore[method-assign]
    source.subscribe(["news.keyed"], listener=loop.listener)
    stop = threading.Event()
    source.on_eof = stop.set
    loop.run(stop)

    emitted = [w for _, w in sink.records("sentiment.windows", WindowStat)]
    [first] = [w for w in emitted if w.window_start == STORY_T0]
    assert shape(first) == ("overall", STORY_T0, 3, 1, True)  # all three stories, in one final


def test_a_redelivered_point_counts_once(settings: Settings, store: Store) -> None:
    first = point_at(1, "p1")

    run = aggregate(
        settings, store, [first, point_at(2, "p2"), first, point_at(18, "p3")], batch_size=2
    )

    assert [shape(stat) for _, stat in run.outputs] == [("overall", STORY_T0, 2, 1, True)]


KEYS = ("overall", "topic:Earnings", "topic:Macro", "ticker:AAPL", "ticker:MSFT")


def keyed_stream(n: int = 160, seed: int = 11) -> dict[int, list[KeyedPoint]]:
    """Stories over about four hours fanned out to two or three series each, some out of order
    (within the grace, within the allowed lateness, and beyond it) and some redelivered. A
    series lives in one partition, as the router's keyed partitioning makes it."""
    rng = random.Random(seed)
    partitions: dict[int, list[KeyedPoint]] = {0: [], 1: []}
    for i in range(n):
        delay = rng.choice([0, 0, 0, 0, 1, 5, 12, 30])  # minutes behind the stream
        minutes = 1.5 * i - delay
        sentiment = rng.choice(["negative", "neutral", "positive"])
        score = {"negative": -0.7, "neutral": 0.0, "positive": 0.6}[sentiment]
        for key in ("overall", *rng.sample(KEYS[1:], rng.randint(1, 2))):
            point = point_at(minutes, f"s{i}", key, sentiment=sentiment, score=score)
            partition = partitions[KEYS.index(key) % 2]
            partition.append(point)
            if rng.random() < 0.04:
                partition.append(point)  # an at-least-once redelivery
    return partitions


def test_partitions_handed_to_other_members_give_the_windows_of_one_uninterrupted_run(
    tmp_path: Path,
) -> None:
    settings = isolated_settings(
        tmp_path,
        windows=("15m", "1h"),
        grace_seconds=120,
        allowed_lateness_seconds=600,
        window_emit="final",
    )
    stream = keyed_stream()
    whole_store = Store(f"sqlite:///{tmp_path / 'whole.db'}")
    whole = aggregate(settings, whole_store, stream, batch_size=7)

    # One member reads the first part of both partitions and commits its state with its
    # offsets; then each partition goes to a new member, which restores it on assignment.
    store = Store(settings.database_url)
    halves = {p: points[: len(points) // 2] for p, points in stream.items()}
    first = aggregate(settings, store, halves, batch_size=7)
    assert store.load_state("aggregator", "0/") and store.load_state("aggregator", "1/")
    second = aggregate(settings, store, {0: stream[0]}, batch_size=7)
    third = aggregate(settings, store, {1: stream[1]}, batch_size=7)

    def order(output: tuple[str, WindowStat]) -> tuple[Any, ...]:
        _, stat = output
        return stat.key, stat.window_start, stat.window_end, stat.version

    handed_over = first.outputs + second.outputs + third.outputs
    assert len(whole.outputs) > 40 and any(stat.version > 1 for _, stat in whole.outputs)
    assert sorted(handed_over, key=order) == sorted(whole.outputs, key=order)
    assert stored_windows(store) == stored_windows(whole_store)
    assert sorted(map(str, store.query(late_items))) == sorted(
        map(str, whole_store.query(late_items))
    )
    dead = [(d.partition, d.offset, d.reason) for d in first.dead + second.dead + third.dead]
    assert whole.dead and sorted(dead) == sorted(
        (d.partition, d.offset, d.reason) for d in whole.dead
    )
    assert (
        store.load_offsets("aggregator")
        == whole.offsets
        == {
            ("news.keyed", 0): len(stream[0]),
            ("news.keyed", 1): len(stream[1]),
        }
    )


def in_order_stream(n: int = 200, seed: int = 5) -> list[KeyedPoint]:
    """Stories a minute apart, some up to 20 minutes behind (within the allowed lateness of
    ``grown_settings``), fanned out to ``overall`` and one or two other series."""
    rng = random.Random(seed)
    points = []
    for i in range(n):
        minutes = i - rng.choice([0, 0, 0, 3, 20])
        for key in ("overall", *rng.sample(KEYS[1:], rng.randint(1, 2))):
            points.append(point_at(minutes, f"g{i}", key))
    return points


def window_counts(points: Sequence[KeyedPoint], specs: Sequence[str]) -> Counter:
    """The count of each (series, window start, window end), each story once."""
    counts: Counter = Counter()
    for p in {(p.key, p.point.id): p for p in points}.values():
        for spec in specs:
            for start, end in WindowSpec.parse(spec).bounds(p.point.published_at):
                counts[(p.key, start, end)] += 1
    return counts


def by_partition(points: Sequence[KeyedPoint], count: int) -> dict[int, list[KeyedPoint]]:
    """The points as the router sends them to ``count`` partitions (a stand-in partitioner)."""
    partitions: dict[int, list[KeyedPoint]] = {p: [] for p in range(count)}
    for point in points:
        partitions[KEYS.index(point.key) % count].append(point)
    return partitions


@pytest.mark.parametrize("move_state", [True, False], ids=["moved", "left-behind"])
def test_growing_news_keyed_moves_each_series_open_windows_to_its_new_partition(
    tmp_path: Path, move_state: bool
) -> None:
    """The first half goes to two partitions, the second to three; in between the state moves
    (``repartition_state``) as `finsent kafka grow` moves it. Every window's count is then that
    of its stories, each once: none is split between two engines. Left behind, they are."""
    specs = ("15m", "1h")
    settings = isolated_settings(
        tmp_path,
        windows=specs,
        grace_seconds=120,
        allowed_lateness_seconds=3600,
        window_emit="updates",  # open windows too are written, so every window reconciles
        window_update_seconds=0,
    )
    store = Store(settings.database_url)
    points = in_order_stream()
    first, second = points[: len(points) // 2], points[len(points) // 2 :]
    before = by_partition(first, 2)
    aggregate(settings, store, before)
    rows = store.load_state("aggregator")
    if move_state:
        moved = repartition_state(rows, lambda key: KEYS.index(key) % 3)
        store.commit(
            Commit(stage="aggregator", state_put=moved, state_delete=set(rows) - set(moved))
        )
        assert moved.keys() != rows.keys() and any(k.startswith("2/") for k in moved)
    after = by_partition(second, 3)
    run = aggregate(settings, store, {p: before.get(p, []) + after[p] for p in range(3)})

    got = store_counts(store)
    want = window_counts(points, specs)
    assert not run.dead  # nothing was too late, so every story counts
    if move_state:
        assert got == want
    else:
        assert got != want  # the hazard the move prevents: series split between engines


# -- against a real broker -------------------------------------------------------------------

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SPECS = ("15m", "1h")
TOPICS = ["Earnings", "Macro", "Financials", "Energy | Oil", "Markets"]
TICKERS = [f"T{i:02d}" for i in range(12)]


def stories(n: int, seed: int = 3) -> list[ScoredItem]:
    """Stories in publish-time order, with a repeat of an earlier one now and then (the
    scorer is at-least-once, so downstream must count each id once)."""
    rng = random.Random(seed)
    out: list[ScoredItem] = []
    for i in range(n):
        if out and rng.random() < 0.03:
            out.append(rng.choice(out[-20:]))  # a redelivery
            continue
        published = T0 + timedelta(seconds=40 * i)
        score = rng.uniform(-1, 1)
        out.append(
            scored_item(
                id=f"n{i}",
                source=f"src{rng.randint(0, 3)}",
                title=f"Story {i}",
                published_at=published,
                tickers=tuple(rng.sample(TICKERS, rng.randint(0, 2))),
                topic=rng.choice(TOPICS),
                sentiment="negative" if score < -0.3 else "positive" if score > 0.3 else "neutral",
                score=round(score, 4),
                confidence=0.8,
                model_version="fault-test",
            )
        )
    return out


def expected_counts(items: list[ScoredItem]) -> Counter:
    specs = [WindowSpec.parse(s) for s in SPECS]
    counts: Counter = Counter()
    for s in {s.item.id: s for s in items}.values():
        for key in series_keys(s):
            bounds = {b for spec in specs for b in spec.bounds(s.item.published_at)}
            for start, end in bounds:
                counts[(key, start, end)] += 1
    return counts


def fault_settings(base: Settings, **update: object) -> Settings:
    return base.model_copy(
        update={
            "windows": SPECS,
            "grace_seconds": 120,
            "allowed_lateness_seconds": 0,
            # Running updates make open windows visible too, so every window reconciles.
            "window_emit": "updates",
            "window_update_seconds": 0.0,
            "batch_max_size": 16,
            "aggregator_batch_max": 64,  # many transactions, so a kill lands between two
            "batch_max_wait_ms": 100,
            "metrics_port": 0,
            **update,
        }
    )


def produce(settings: Settings, items: list[ScoredItem]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for s in items:
        producer.send(settings.topic("news.scored"), key=s.item.id.encode(), value=encode(s))
    producer.flush()
    producer.close()


def end_offsets(settings: Settings, name: str) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        topic = settings.topic(name)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def drained(store: Store, settings: Settings, n_items: int) -> bool:
    """The router has read every story, and the aggregators every keyed point."""
    routed = sum(store.load_offsets("router").values())
    if routed < n_items:
        return False
    stored = store.load_offsets("aggregator")
    return all(stored.get(tp, 0) >= end for tp, end in end_offsets(settings, "news.keyed").items())


def store_counts(store: Store) -> Counter:
    return Counter(
        {
            (r["key"], as_utc(r["window_start"]), as_utc(r["window_end"])): r["count"]
            for r in store.query(windows)
        }
    )


def start_router_and_aggregator(settings: Settings, stages: StageProcesses) -> Store:
    """Both stages as processes, returned once the aggregator is well into the stream (a
    fault injected now lands mid-stream); the store to watch them by."""
    store = Store(settings.database_url)
    stages.start("router", "router")
    stages.start("aggregator", "aggregator")
    wait_until(
        lambda: sum(store.load_offsets("aggregator").values()) > 300,
        90,
        "processing under way",
        context=stages.tails,
    )
    return store


def reconcile(store: Store, items: list[ScoredItem]) -> None:
    got, want = store_counts(store), expected_counts(items)
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, f"missing/wrong {list(missing.items())[:5]}, extra {extra}"
    assert len(store.query(scored_items)) == len({s.item.id for s in items})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, pipeline_settings: Settings) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return pipeline_settings.database_url


@pytest.mark.kafka
@pytest.mark.slow
def test_kill_9_and_restart_loses_nothing_and_counts_nothing_twice(
    pipeline_settings: Settings, stages: StageProcesses, store_url: str
) -> None:
    settings = fault_settings(pipeline_settings, store_url=store_url)
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    items = stories(1200)
    produce(settings, items)
    store = Store(settings.database_url)

    stages.env["FINSENT_INSTANCE_ID"] = "a1"  # static membership: a restart takes over at once
    stages.start("router", "router")
    first = stages.start("aggregator", "aggregator")
    wait_until(
        lambda: sum(store.load_offsets("aggregator").values()) > 600,
        90,
        "the aggregator mid-stream",
        context=stages.tails,
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not drained(store, settings, len(items)), "the kill must land mid-stream"

    stages.start("aggregator-2", "aggregator")
    wait_until(
        lambda: drained(store, settings, len(items)), 120, "all points", context=stages.tails
    )
    reconcile(store, items)
    assert stages.stop_all()["aggregator-2"] == 0


@pytest.mark.kafka
@pytest.mark.slow
def test_two_aggregators_in_one_group_give_the_same_totals_as_one(
    pipeline_settings: Settings, stages: StageProcesses
) -> None:
    settings = fault_settings(pipeline_settings, partitions_per_topic={"news.keyed": 4})
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    items = stories(800, seed=5)
    store = Store(settings.database_url)
    stages.start("router", "router")
    stages.env["FINSENT_INSTANCE_ID"] = "a"
    stages.start("aggregator-a", "aggregator")
    stages.env["FINSENT_INSTANCE_ID"] = "b"
    stages.start("aggregator-b", "aggregator")

    def owners() -> list[set[int]]:
        found = []
        for name in ("aggregator-a", "aggregator-b"):
            lines = re.findall(r"owns partitions \[([\d, ]*)\]", stages.log(name))
            found.append({int(p) for p in lines[-1].split(",") if p.strip()} if lines else set())
        return found

    wait_until(lambda: all(owners()), 60, "both aggregators own partitions", context=stages.tails)
    a, b = owners()
    assert a | b == {0, 1, 2, 3} and not a & b
    produce(settings, items)
    wait_until(
        lambda: drained(store, settings, len(items)), 120, "all points", context=stages.tails
    )
    reconcile(store, items)


@pytest.mark.kafka
@pytest.mark.slow
def test_a_broker_restart_during_processing_loses_nothing(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    # A broker of its own: the session's broker is shared by the other tests.
    base = pipeline_settings.model_copy(
        update={"kafka_port": free_port(), "kafka_controller_port": free_port()}
    )
    settings = fault_settings(base)
    broker = LocalKafka(settings, home=tmp_path / "broker")
    broker.start()
    stages = StageProcesses(settings, tmp_path)
    try:
        ensure_topics(settings)
        items = stories(1000, seed=9)
        produce(settings, items[:500])
        store = start_router_and_aggregator(settings, stages)
        broker.stop()
        time.sleep(3)  # the stages see the broker gone: their sends and fetches fail meanwhile
        broker.start()
        produce(settings, items[500:])
        wait_until(
            lambda: drained(store, settings, len(items)), 150, "all points", context=stages.tails
        )
        reconcile(store, items)
        assert stages.stop_all() == {"router": 0, "aggregator": 0}
    finally:
        stages.stop_all()
        broker.stop()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.postgres
def test_a_store_outage_pauses_the_stage_and_loses_nothing(
    pipeline_settings: Settings,
    stages: StageProcesses,
    postgres_server,
    postgres_url: str,
) -> None:
    """PostgreSQL goes away mid-stream: the stages pause their partitions, retry with backoff,
    and finish exactly once the store is back."""
    settings = fault_settings(pipeline_settings, store_url=postgres_url)
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    items = stories(900, seed=13)
    produce(settings, items)
    store = start_router_and_aggregator(settings, stages)
    store.close()
    postgres_server.stop()
    try:
        # Down until the stages have hit the outage (the aggregator is mid-stream; the router
        # may be done already), paused and begun to retry.
        wait_until(
            lambda: "store sink failed" in stages.log("router") + stages.log("aggregator"),
            60,
            "the stages to see the store gone",
            context=stages.tails,
        )
    finally:
        postgres_server.start()
    wait_until(
        lambda: drained(store, settings, len(items)), 150, "all points", context=stages.tails
    )
    reconcile(store, items)
    logs = stages.log("router") + stages.log("aggregator")
    assert "store sink failed" in logs and "pausing and retrying" in logs
    assert stages.stop_all() == {"router": 0, "aggregator": 0}
