"""Fault tests of the router and aggregators against a real broker.

Scored stories go straight onto news.scored; the router fans them out by series key and the
aggregators window them. The reconciliation is exact: for every (series, window), the count in
the store equals the count in the input, after a kill -9, with two aggregators in one group, and
across a broker restart, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from support.stages import StageProcesses, free_port, wait_until

from finsent.app.kafka_local import LocalKafka
from finsent.core.records import NewsItem, ScoredItem, encode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import Store, as_utc, scored_items, windows
from finsent.stream.windows import WindowSpec, series_keys

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

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
        at = T0 + timedelta(seconds=40 * i)
        score = rng.uniform(-1, 1)
        news = NewsItem(
            id=f"n{i}",
            source=f"src{rng.randint(0, 3)}",
            title=f"Story {i}",
            published_at=at,
            fetched_at=at,
            tickers=tuple(rng.sample(TICKERS, rng.randint(0, 2))),
        )
        out.append(
            ScoredItem(
                item=news,
                topic=rng.choice(TOPICS),
                sentiment="negative" if score < -0.3 else "positive" if score > 0.3 else "neutral",
                score=round(score, 4),
                confidence=0.8,
                model_version="fault-test",
                scored_at=at,
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
        store = Store(settings.database_url)
        stages.start("router", "router")
        stages.start("aggregator", "aggregator")
        wait_until(
            lambda: sum(store.load_offsets("aggregator").values()) > 300,
            90,
            "processing under way",
            context=stages.tails,
        )
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
    store = Store(settings.database_url)
    stages.start("router", "router")
    stages.start("aggregator", "aggregator")
    wait_until(
        lambda: sum(store.load_offsets("aggregator").values()) > 300,
        90,
        "processing under way",
        context=stages.tails,
    )
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
