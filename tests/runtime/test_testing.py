"""The shipped test kit: its in-memory source, sink and dead-letter topic behave as the runner
needs them to, and run_logic drives real stage logic with production's semantics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition
from support.records import news_item, scored_item
from support.stage_logic import PoisonSensitiveScorer

from finsent.core.records import KeyedPoint, NewsItem, ScoredItem, encode
from finsent.runtime.store import Store, scored_items
from finsent.runtime.testing import (
    CollectingSink,
    MemoryDeadLetters,
    MemorySource,
    SourceRecord,
    run_logic,
)
from finsent.stream.router import Router, route
from finsent.stream.scoring import Scoring

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TP = TopicPartition("t", 0)


def news(n: int, title: str = "") -> NewsItem:
    return news_item(
        id=f"s{n}", title=title or f"Story {n}", published_at=T0, tickers=("NWB",) if n % 2 else ()
    )


def scored(n: int) -> ScoredItem:
    return scored_item(news(n), score=-0.5)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


# -- run_logic -------------------------------------------------------------------------------


def test_run_logic_drives_a_store_stage_to_the_end_of_its_input(store: Store) -> None:
    items = [scored(i) for i in range(5)]

    run = run_logic(Router(store), [*items[:2], b"{not json", *items[2:]], store, stage="router")

    assert run.outputs == route(items)  # decoded from the bytes the sink was sent
    assert all(isinstance(record, KeyedPoint) for _, record in run.outputs)
    [letter] = run.dead
    assert (letter.stage, letter.source_topic, letter.offset) == ("router", "news.scored", 2)
    assert run.offsets == {("news.scored", 0): 6}  # past the bad payload too
    assert sorted(r["id"] for r in store.query(scored_items)) == [f"s{i}" for i in range(5)]


def test_run_logic_resumes_from_the_stored_offsets_like_a_restarted_stage(store: Store) -> None:
    items = [scored(i) for i in range(6)]
    run_logic(Router(store), items[:4], store, stage="router", batch_size=3)

    again = run_logic(Router(store), items, store, stage="router", batch_size=3)

    assert again.outputs == route(items[4:])  # the first four were done and committed
    assert again.offsets == {("news.scored", 0): 6}


def test_run_logic_spreads_a_mapping_over_partitions(store: Store) -> None:
    run = run_logic(
        Router(store), {0: [scored(0), scored(1)], 1: [scored(2)]}, store, stage="router"
    )

    assert run.offsets == {("news.scored", 0): 2, ("news.scored", 1): 1}
    assert {record.point.id for _, record in run.outputs} == {"s0", "s1", "s2"}


def test_run_logic_commits_a_kafka_stage_to_its_consumer_group() -> None:
    stories = [news(0), news(1, "poison"), news(2), news(3)]

    run = run_logic(
        Scoring(PoisonSensitiveScorer()), stories, None, lambda: T0, stage="scorer", batch_size=2
    )

    assert [key for key, _ in run.outputs] == ["s0", "s2", "s3"]
    assert run.offsets == {("news.raw", 0): 4} == run.source.committed
    [letter] = run.dead
    assert letter.reason == "scorer failed: RuntimeError: tokenizer exploded"
    assert letter.offset == 1  # where the story was read


def test_run_logic_retries_a_failing_sink_and_keeps_each_output_once(store: Store) -> None:
    sink = CollectingSink()
    sink.fail(2)
    items = [scored(i) for i in range(4)]

    run = run_logic(Router(store), items, store, stage="router", batch_size=2, sink=sink)

    assert sink.failed_deliveries == 2
    assert run.outputs == route(items)
    assert run.offsets == {("news.scored", 0): 4}


def test_run_logic_refuses_input_of_another_record_type(store: Store) -> None:
    with pytest.raises(TypeError, match="ScoredItem or bytes"):
        run_logic(Router(store), [news(0)], store, stage="router")
    with pytest.raises(ValueError, match="consumes no topic"):
        run_logic(Router(store), [], store, stage="ingest")


# -- the pieces ------------------------------------------------------------------------------


class Listener:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def on_partitions_revoked(self, partitions: list[Any]) -> None:
        self.calls.append(("revoked", partitions))

    def on_partitions_assigned(self, partitions: list[Any]) -> None:
        self.calls.append(("assigned", partitions))


def test_memory_source_assigns_on_its_first_poll_and_honours_pause_and_seek() -> None:
    source = MemorySource("t", {0: [b"a", b"b", b"c"]})
    listener = Listener()
    source.subscribe(["t"], listener=listener)

    assert source.poll(max_records=2) == {
        TP: [SourceRecord("t", 0, 0, None, b"a"), SourceRecord("t", 0, 1, None, b"b")]
    }
    assert listener.calls == [("assigned", [TP])]
    source.pause(TP)
    assert source.poll() == {} and source.paused() == {TP}
    source.resume(TP)
    source.seek(TP, 0)
    assert [r.value for r in source.poll()[TP]] == [b"a", b"b", b"c"]
    assert (source.position(TP), source.highwater(TP)) == (3, 3)


def test_memory_source_rebalance_forgets_pauses_and_rewinds_to_committed() -> None:
    source = MemorySource("t", {0: [b"a", b"b", b"c"]})
    listener = Listener()
    source.subscribe(["t"], listener=listener)
    source.poll()
    source.commit({TP: 1})
    source.pause(TP)

    source.rebalance()

    assert listener.calls[1:] == [("revoked", [TP]), ("assigned", [TP])]
    assert source.paused() == set() and source.position(TP) == 1


def test_memory_source_ends_only_once_what_was_read_is_committed() -> None:
    ended: list[bool] = []
    source = MemorySource("t", {0: [b"a"]}, on_eof=lambda: ended.append(True))
    source.subscribe(["t"])
    source.poll()
    assert source.poll() == {} and not ended  # read, not yet committed
    source.commit_async()
    source.poll()
    assert ended == [True]


def test_collecting_sink_fails_whole_deliveries_and_keeps_only_what_it_acknowledged() -> None:
    sink = CollectingSink()
    sink.fail(1)
    lost = [sink.send("t", b"k", encode(news(0))), sink.send("t", b"k", encode(news(1)))]
    sink.flush()
    for future in lost:
        with pytest.raises(KafkaTimeoutError):
            future.get()
    assert sink.sent == []

    kept = sink.send("t", b"s2", encode(news(2)))
    kept.get()  # waiting for a send delivers it
    assert sink.records("t", NewsItem) == [("s2", news(2))]
    assert sink.values("t") == [encode(news(2))]


def test_memory_dead_letters_keep_the_stage_reason_and_where_it_was_read() -> None:
    dead = MemoryDeadLetters("router", clock=lambda: T0)
    dead.send("bad", b"\xff", SourceRecord("news.scored", 2, 7, None, b"\xff"), source="wire")

    [letter] = dead.letters
    assert (letter.stage, letter.reason, letter.source, letter.at) == ("router", "bad", "wire", T0)
    assert (letter.source_topic, letter.partition, letter.offset) == ("news.scored", 2, 7)
    assert letter.payload() == b"\xff" and dead.count == 1
