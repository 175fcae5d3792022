"""`finsent kafka grow` against a real broker: a pipeline run on two partitions, then
FINSENT_PARTITIONS raised to three. A stage refuses to start in one line until the topics grow;
grow refuses while a stage runs or records are unread; once grown, every series' windows carry
on in one aggregator and every window's count is that of its stories, each once."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from support.records import scored_item
from support.stages import StageProcesses, read_topic, wait_until

from finsent.app.repartition import GrowError, grow, plan
from finsent.core.records import ScoredItem, encode
from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.core.stages import consumers
from finsent.runtime.kafka_io import end_offsets, ensure_topics, partition_counts, partition_of
from finsent.runtime.store import Store, as_utc, windows
from finsent.stream.windows import WindowSpec, series_keys

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SPECS = ("15m", "1h")
STAGES = ("router", "aggregator", "alerter", "notifier")


def stories(n: int, seed: int = 9) -> list[ScoredItem]:
    """Stories 40 s apart over a few series of each kind, in publish order."""
    rng = random.Random(seed)
    return [
        scored_item(
            id=f"g{i}",
            source=f"src{rng.randint(0, 2)}",
            title=f"Story {i}",
            published_at=T0 + timedelta(seconds=40 * i),
            tickers=tuple(rng.sample(["AAA", "BBB", "CCC", "DDD", "EEE"], rng.randint(0, 2))),
            topic=rng.choice(["Earnings", "Macro", "Energy"]),
            model_version="grow-test",
        )
        for i in range(n)
    ]


def expected_counts(items: list[ScoredItem]) -> Counter:
    counts: Counter = Counter()
    for s in items:
        for key in series_keys(s):
            for spec in SPECS:
                for start, end in WindowSpec.parse(spec).bounds(s.item.published_at):
                    counts[(key, start, end)] += 1
    return counts


def store_counts(store: Store) -> Counter:
    return Counter(
        {
            (r["key"], as_utc(r["window_start"]), as_utc(r["window_end"])): r["count"]
            for r in store.query(windows)
        }
    )


def produce(settings: Settings, items: list[ScoredItem]) -> None:
    """Onto news.scored, in publish order on one partition: spread over several, the router
    would read them in an order that makes some hours late (beside the point here)."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for s in items:
        producer.send(settings.topic("news.scored"), key=b"one", value=encode(s))
    producer.flush()
    producer.close()


def all_read(settings: Settings, store: Store, routed: int) -> bool:
    """The router has read ``routed`` stories, and every keyed topic's consumer all of it."""
    if sum(store.load_offsets("router").values()) < routed:
        return False
    for spec in consumers():
        if spec.source is None or spec.name in ("scorer", "router"):
            continue
        stored = store.load_offsets(spec.name)
        if any(stored.get(tp, 0) < end for tp, end in end_offsets(settings, [spec.source]).items()):
            return False
    return True


def run_until_read(settings: Settings, stages: StageProcesses, store: Store, routed: int) -> None:
    stages.env.update(settings.child_env())
    for name in STAGES:
        stages.start(name, name)
    wait_until(lambda: all_read(settings, store, routed), 120, "every record read", 1, stages.tails)
    codes = stages.stop_all()
    assert all(codes[name] == 0 for name in STAGES), stages.tails()


def test_raising_partitions_refuses_until_grown_then_no_series_is_split(
    pipeline_settings: Settings, stages: StageProcesses
) -> None:
    two = pipeline_settings.model_copy(
        update={
            "partitions": 2,
            "windows": SPECS,
            "grace_seconds": 120,
            "allowed_lateness_seconds": 3600,
            # Running updates write open windows too, so every window reconciles.
            "window_emit": "updates",
            "window_update_seconds": 0.0,
            "batch_max_wait_ms": 100,
            "metrics_port": 0,
            "retention_days": 0,  # the stories are from March: keep them
        }
    )
    three = two.model_copy(update={"partitions": 3})
    store = Store(two.database_url)
    items = stories(400)
    first, second = items[:200], items[200:]  # the cut falls inside open 15 m and 1 h windows
    ensure_topics(two)
    produce(two, first)
    run_until_read(two, stages, store, len(first))
    state_before = store.load_state("aggregator")
    assert store_counts(store) == expected_counts(first)  # open windows included
    assert {k.split("/")[0] for k in state_before} == {"0", "1"}

    # Raised without growing: the stage says why and exits at once, changing nothing.
    stages.env.update(three.child_env())
    started = time.monotonic()
    refused = stages.start("aggregator-raised", "aggregator")
    assert refused.wait(timeout=30) == 1
    took = time.monotonic() - started
    [line] = [ln for ln in stages.log("aggregator-raised").splitlines() if ln.startswith("error:")]
    assert line.startswith(
        f"error: FINSENT_PARTITIONS asks for 3 partitions but {three.topic('news.keyed')} has 2;"
    )
    assert "finsent kafka grow" in line
    assert took < 20, f"refused after {took:.1f} s"  # the process's start-up, then at once
    assert partition_counts(three) == dict.fromkeys(TOPIC_NAMES, 2)

    # Grow refuses while records wait in the keyed topics (here: the router has routed the
    # second half, the aggregator has not read it).
    produce(three, second[:20])
    stages.env.update(two.child_env())
    stages.start("router", "router")
    wait_until(lambda: sum(store.load_offsets("router").values()) >= len(first) + 20, 60, "routing")
    with pytest.raises(GrowError, match=r"stages still run \(members per group: router \(1\)\)"):
        grow(three, store)
    stages.stop_all()
    with pytest.raises(GrowError, match=r"records not read yet \(aggregator \d+ of .*news\.keyed"):
        grow(three, store)
    run_until_read(two, stages, store, len(first) + 20)
    windows_before = store_counts(store)

    started = time.monotonic()
    growths = grow(three, store)
    took_grow = time.monotonic() - started

    assert {g.topic: (g.before, g.after) for g in growths} == {
        three.topic(name): (2, 3) for name in TOPIC_NAMES
    }
    assert plan(three) == {}
    moved = {g.stage: g.moved_rows for g in growths if g.stage}
    assert moved["aggregator"] > 0, moved
    state_after = store.load_state("aggregator")
    for row in state_after:
        part, _, rest = row.partition("/")
        if rest != "clock":
            key = rest.split("#ids")[0].split("|", 2)[2]
            assert int(part) == partition_of(key, 3), row
    assert store_counts(store) == windows_before  # moving state writes no window
    assert took_grow < 30, f"grow took {took_grow:.1f} s"

    produce(three, second[20:])
    run_until_read(three, stages, store, len(items))
    keyed = read_topic(three, "news.keyed")
    assert {r.partition for r in keyed} == {0, 1, 2}
    assert store_counts(store) == expected_counts(items)
