"""The stage runner's loop in process, with the test kit's in-memory consumer and producer: no
broker. Fencing, re-sync after a rebalance, backpressure against a failing sink, the pipelined
Kafka checkpoint, and the loss that a rebalance during a sink retry used to cause."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition
from sqlalchemy.exc import OperationalError
from support.records import scored_item

from finsent.core.records import DeadLetter, ScoredItem, decode, encode
from finsent.core.settings import Settings
from finsent.core.stages import Checkpoint, StageSpec, stage
from finsent.runtime import metrics
from finsent.runtime.kafka_io import DeadLetters, DeadLetterSink
from finsent.runtime.runner import (
    STOP_GRACE_S,
    Message,
    Output,
    Partition,
    RunnerConfig,
    SourceRunner,
    StageLoop,
    StoppedRetrying,
    caught_up,
)
from finsent.runtime.store import Commit, Store
from finsent.runtime.testing import (
    FAST_BACKOFF,
    CollectingSink,
    MemoryDeadLetters,
    MemorySource,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOPIC = "news.scored"
PART = (TOPIC, 0)


def spec(checkpoint: Checkpoint) -> StageSpec:
    """A test stage that reads and writes news.scored, checkpointing as told."""
    return StageSpec(
        name="echo",
        summary="echoes scored stories",
        source=TOPIC,
        sink=TOPIC,
        checkpoint=checkpoint,
        port=0,
        batch_size=lambda settings: 4,
    )


def scored(n: int) -> ScoredItem:
    return scored_item(
        id=f"s{n}",
        title=f"Story {n}",
        published_at=T0,
        topic="Markets",
        sentiment="neutral",
        score=0.0,
        confidence=0.5,
    )


def payloads(n: int) -> list[bytes]:
    return [encode(scored(i)) for i in range(n)]


class Echo:
    """Passes each story on; with a store, records which offset each story came from."""

    def __init__(self, keeps_state: bool = True) -> None:
        self.keeps_state = keeps_state
        self.assignments: list[list[Partition]] = []
        self.seen: list[str] = []

    def assigned(self, partitions: list[Partition]) -> None:
        self.assignments.append(partitions)

    def revoked(self, partitions: list[Partition]) -> None:
        pass

    def process(
        self, batch: Sequence[Message[ScoredItem]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        self.seen.extend(m.value.item.id for m in batch)
        outputs: list[Output] = [(m.value.item.id, m.value) for m in batch]
        if not self.keeps_state:
            return outputs, None
        return outputs, Commit(stage="echo", state_put={m.value.item.id: m.offset for m in batch})


class ForgetfulSource(MemorySource):
    """A consumer whose group rebalances while it is paused (a broker outage longer than the
    session timeout does that): the rebalance assigns the partitions again, un-paused."""

    def __init__(self, values: list[bytes], rebalances: int = 1) -> None:
        super().__init__(TOPIC, {0: values})
        self.pending_rebalances = rebalances
        self.pauses = 0

    def pause(self, *partitions: Any) -> None:
        self.pauses += 1
        super().pause(*partitions)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None, **kw: Any) -> Any:
        if self.paused() and self.pending_rebalances:
            self.pending_rebalances -= 1
            self.rebalance()
        return super().poll(timeout_ms, max_records)


def make_loop(
    source: MemorySource,
    logic: Echo,
    store: Store | None,
    sink: CollectingSink | None = None,
    checkpoint: Checkpoint = Checkpoint.STORE,
) -> tuple[StageLoop, CollectingSink, threading.Event]:
    sink = sink or CollectingSink()
    loop = StageLoop(
        spec(checkpoint),
        logic,
        consumer=source,
        producer=sink,
        dead=MemoryDeadLetters("echo"),
        store=store,
        sink_topic=TOPIC,
        max_batch=4,
        max_wait_ms=10,
        clock=lambda: T0,
        backoff=FAST_BACKOFF,
    )
    source.subscribe([TOPIC], listener=loop.listener)
    stop = threading.Event()
    source.on_eof = stop.set
    return loop, sink, stop


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def run_to_end(loop: StageLoop, stop: threading.Event, deadline_s: float = 5.0) -> None:
    """Run until the source's end is durable; a lost record would keep the end from coming,
    so a deadline stops the run and lets the assertions say what is missing."""
    timer = threading.Timer(deadline_s, stop.set)
    timer.start()
    try:
        loop.run(stop)
    finally:
        timer.cancel()


def sent_ids(sink: CollectingSink) -> list[str]:
    return [record.item.id for _, record in sink.records(TOPIC, ScoredItem)]


# -- the loss bug: a rebalance while a batch is retried --------------------------------------


def test_a_rebalance_while_retrying_a_failing_sink_loses_no_story(store: Store) -> None:
    """The sink fails twice; while the runner waits to retry, the group rebalances and the
    partition comes back un-paused, so the runner's keep-alive poll returns records. They must
    be given back, not dropped: every story reaches the sink and the store exactly once."""
    source = ForgetfulSource(payloads(12))
    sink = CollectingSink()
    sink.fail(2)
    logic = Echo()
    loop, sink, stop = make_loop(source, logic, store, sink)

    run_to_end(loop, stop)

    assert source.rebalances == 1 and sink.failed_deliveries == 2
    assert Counter(sent_ids(sink)) == {f"s{i}": 1 for i in range(12)}
    assert store.load_offsets("echo") == {PART: 12}
    assert store.load_state("echo") == {f"s{i}": i for i in range(12)}


def test_a_rebalance_while_retrying_a_pipelined_batch_loses_no_story() -> None:
    """The same outage against the Kafka-checkpointed (scorer-like) loop: at-least-once, so a
    story may be sent twice, but none is missing and the group's offsets reach the end."""
    source = ForgetfulSource(payloads(12))
    sink = CollectingSink()
    logic = Echo(keeps_state=False)
    loop, sink, stop = make_loop(source, logic, None, sink, Checkpoint.KAFKA)
    loop.step(stop)  # batch 1 sent, not yet waited for
    # Its delivery (with batch 2's) fails when batch 2 waits for it, and so does the re-send.
    sink.fail(2)

    run_to_end(loop, stop)

    assert source.rebalances == 1
    assert set(sent_ids(sink)) == {f"s{i}" for i in range(12)}
    assert source.committed == {PART: 12}


# -- fencing ---------------------------------------------------------------------------------


def test_a_fenced_member_re_syncs_and_takes_up_after_the_new_owner(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(10)})
    logic = Echo()
    loop, sink, stop = make_loop(source, logic, store)
    loop.step(stop)  # stories 0-3
    assert store.load_offsets("echo") == {PART: 4}

    # Meanwhile another member owned the partition and got to offset 8.
    store.commit(
        Commit(stage="echo", offsets={PART: 8}, expected={PART: 4}, state_put={"owner": "b"})
    )
    loop.step(stop)  # stories 4-7: sent, but their commit is refused

    assert store.load_offsets("echo") == {PART: 8}
    assert "s4" not in store.load_state("echo")  # the stale member wrote nothing
    assert logic.assignments == [[PART], [PART]]  # it re-synced: state reloaded

    loop.run(stop)  # on from the new owner's offset, not from the stale one's
    assert logic.seen == [f"s{i}" for i in range(10)]
    assert store.load_offsets("echo") == {PART: 10}
    state = store.load_state("echo")
    assert state["owner"] == "b" and {k for k in state if k.startswith("s")} == {
        "s0",
        "s1",
        "s2",
        "s3",
        "s8",
        "s9",
    }


# -- rebalance -------------------------------------------------------------------------------


def test_after_a_rebalance_the_stage_resumes_from_its_stored_offsets(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(8)})
    logic = Echo()
    loop, sink, stop = make_loop(source, logic, store)
    loop.step(stop)
    source.committed.clear()  # the group's own offsets are behind (an async commit was lost)

    source.rebalance()
    assert logic.assignments == [[PART], [PART]]  # state reloaded on the new assignment
    loop.run(stop)

    assert logic.seen == [f"s{i}" for i in range(8)]  # nothing read twice
    assert Counter(sent_ids(sink)) == {f"s{i}": 1 for i in range(8)}
    assert store.load_offsets("echo") == {PART: 8}


# -- backpressure ----------------------------------------------------------------------------


def retries(sink_name: str) -> float:
    return metrics.SINK_RETRIES.labels("echo", sink_name)._value.get()


def test_a_failing_kafka_sink_pauses_retries_and_loses_nothing(store: Store) -> None:
    class Recording(MemorySource):
        def __init__(self) -> None:
            super().__init__(TOPIC, {0: payloads(10)})
            self.paused_polls = 0

        def poll(self, timeout_ms: int = 0, max_records: int | None = None, **kw: Any) -> Any:
            self.paused_polls += bool(self.paused())
            return super().poll(timeout_ms, max_records)

    source = Recording()
    sink = CollectingSink()
    sink.fail(3)
    before = retries("kafka")
    loop, sink, stop = make_loop(source, Echo(), store, sink)

    loop.run(stop)

    assert retries("kafka") - before == 3
    assert source.paused_polls >= 3  # kept polling (the group keeps the member), paused
    assert not source.paused()
    assert sent_ids(sink) == [f"s{i}" for i in range(10)]  # in order, once each
    assert store.load_offsets("echo") == {PART: 10}


class CountingHeartbeats(metrics.Heartbeats):
    def __init__(self) -> None:
        super().__init__()
        self.beats: Counter[str] = Counter()

    def beat(self, stage: str) -> None:
        self.beats[stage] += 1
        super().beat(stage)


def test_the_loop_beats_each_iteration_and_each_wait_on_a_failing_sink(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz reads these beats: a stage waiting out a failing sink is alive, not stalled."""
    heartbeats = CountingHeartbeats()
    monkeypatch.setattr(metrics, "HEARTBEATS", heartbeats)
    sink = CollectingSink()
    sink.fail(3)
    loop, sink, stop = make_loop(MemorySource(TOPIC, {0: payloads(4)}), Echo(), store, sink)
    steps = 0
    step = loop.step

    def counted(stop: threading.Event) -> None:
        nonlocal steps
        steps += 1
        step(stop)

    monkeypatch.setattr(loop, "step", counted)

    loop.run(stop)

    assert steps >= 1
    assert heartbeats.beats == {"echo": steps + 3}  # one per iteration, one per retry wait
    assert heartbeats.health("echo").ok


def test_a_failing_store_is_retried_without_sending_the_batch_again(tmp_path: Path) -> None:
    class Flaky(Store):
        failures = 2

        def commit(self, batch: Commit) -> None:
            if self.failures:
                self.failures -= 1
                raise OperationalError("COMMIT", {}, Exception("database is locked"))
            super().commit(batch)

    store = Flaky(f"sqlite:///{tmp_path / 'store.db'}")
    before = retries("store")
    loop, sink, stop = make_loop(MemorySource(TOPIC, {0: payloads(6)}), Echo(), store)

    loop.run(stop)

    assert retries("store") - before == 2
    assert Counter(sent_ids(sink)) == {f"s{i}": 1 for i in range(6)}
    assert store.load_offsets("echo") == {PART: 6}


def test_a_stop_while_retrying_leaves_the_batch_to_be_replayed(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(4)})
    sink = CollectingSink()
    sink.fail(10**6)  # down for good
    loop, sink, stop = make_loop(source, Echo(), store, sink)
    threading.Timer(0.3, stop.set).start()

    assert loop.run(stop) == 0
    assert store.load_offsets("echo") == {} and sink.sent == []


# -- decoding and the pipelined checkpoint ----------------------------------------------------


def test_undecodable_records_become_dead_letters_and_their_offsets_pass(store: Store) -> None:
    source = MemorySource(TOPIC, {0: [b"{not json", *payloads(2)]})
    logic = Echo()
    loop, sink, stop = make_loop(source, logic, store)

    loop.run(stop)

    dead = loop.dead
    assert isinstance(dead, MemoryDeadLetters)
    [letter] = dead.letters
    assert (letter.stage, letter.source_topic, letter.offset) == ("echo", TOPIC, 0)
    assert letter.payload() == b"{not json" and "JSON" in letter.reason
    assert logic.seen == ["s0", "s1"]  # the logic sees records, never bytes
    assert store.load_offsets("echo") == {PART: 3}


def test_kafka_checkpoints_trail_by_one_batch_and_a_clean_stop_settles_the_last() -> None:
    source = MemorySource(TOPIC, {0: payloads(10)})
    loop, sink, stop = make_loop(source, Echo(keeps_state=False), None, None, Checkpoint.KAFKA)

    loop.step(stop)
    assert source.committed == {}  # batch 1 is in flight while batch 2 is processed
    loop.step(stop)
    assert source.committed == {PART: 4}
    loop.run(stop)

    assert source.committed == {PART: 10}
    assert sent_ids(sink) == [f"s{i}" for i in range(10)]


def test_a_store_checkpointed_stage_needs_its_store() -> None:
    with pytest.raises(ValueError, match="store"):
        make_loop(MemorySource(TOPIC, {0: []}), Echo(), None)


def test_the_runner_config_takes_the_run_s_topics_and_the_stage_s_checkpoint(
    tmp_path: Path,
) -> None:
    settings = Settings(
        topic_prefix="bt1.",
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        batch_max_size=16,
        batch_max_wait_ms=50,
        instance_id="a",
    )

    router = RunnerConfig.from_settings(settings, stage("router"))
    scorer = RunnerConfig.from_settings(settings, stage("scorer"))
    notifier = RunnerConfig.from_settings(settings, stage("notifier"))

    assert (router.source_topic, router.sink_topic) == ("bt1.news.scored", "bt1.news.keyed")
    assert router.dead_letter_topic == "bt1.news.dlq"
    assert (router.store_url, scorer.store_url) == (settings.database_url, None)
    assert notifier.sink_topic is None  # its outputs leave the system
    assert (scorer.max_batch, router.max_batch, scorer.max_wait_ms) == (16, 64, 50)
    assert (router.kafka.topic_prefix, router.kafka.instance_id) == ("bt1.", "a")
    with pytest.raises(ValueError, match="consumes no topic"):
        RunnerConfig.from_settings(settings, stage("ingest"))


def test_caught_up_partitions_are_those_read_to_the_end_the_broker_reported() -> None:
    source = MemorySource(TOPIC, {0: payloads(2), 1: payloads(1), 2: []})
    source.poll(max_records=2)  # assigns all three; reads partition 0 to its end
    assert caught_up(source) == {(TOPIC, 0), (TOPIC, 2)}

    class NotFetchedYet(MemorySource):
        def highwater(self, partition: TopicPartition) -> int | None:  # type: ignore[override]
            return None  # kafka-python's answer before the first fetch returned

    fresh = NotFetchedYet(TOPIC, {0: []})
    fresh.poll()
    assert caught_up(fresh) == set()


# -- a record the logic fails on ----------------------------------------------------------------


class Picky(Echo):
    """Fails on one story, as a logic does on input it cannot handle (an overflow, a bug)."""

    def __init__(self, bad: str, keeps_state: bool = True) -> None:
        super().__init__(keeps_state)
        self.bad = bad

    def process(
        self, batch: Sequence[Message[ScoredItem]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        if any(m.value.item.id == self.bad for m in batch):
            raise OverflowError("date value out of range")
        return super().process(batch, now, dead)


@pytest.mark.parametrize("checkpoint", [Checkpoint.STORE, Checkpoint.KAFKA])
def test_a_record_the_logic_fails_on_is_dead_lettered_and_the_rest_go_on(
    store: Store, checkpoint: Checkpoint
) -> None:
    source = MemorySource(TOPIC, {0: payloads(10)})
    stateful = checkpoint is Checkpoint.STORE
    loop, sink, stop = make_loop(
        source, Picky("s5", keeps_state=stateful), store if stateful else None, None, checkpoint
    )

    run_to_end(loop, stop)

    assert Counter(sent_ids(sink)) == {f"s{i}": 1 for i in range(10) if i != 5}
    dead = loop.dead
    assert isinstance(dead, MemoryDeadLetters)
    [letter] = dead.letters
    assert (letter.source_topic, letter.offset) == (TOPIC, 5)
    assert "OverflowError" in letter.reason and "date value out of range" in letter.reason
    assert letter.payload() == payloads(10)[5]
    if stateful:
        assert store.load_offsets("echo") == {PART: 10}
        assert set(store.load_state("echo")) == {f"s{i}" for i in range(10) if i != 5}
    else:
        assert source.committed == {PART: 10}


# -- records too large for the broker ------------------------------------------------------------


def big_payloads(n: int, big: int, size: int) -> list[bytes]:
    values = payloads(n)
    values[big] = encode(
        scored_item(id=f"s{big}", title="Big", body="x" * size, published_at=T0, score=0.0)
    )
    return values


@pytest.mark.parametrize("checkpoint", [Checkpoint.STORE, Checkpoint.KAFKA])
def test_an_output_over_the_broker_s_limit_is_dead_lettered_once_and_the_rest_sent_once(
    store: Store, checkpoint: Checkpoint
) -> None:
    source = MemorySource(TOPIC, {0: big_payloads(8, 2, 20_000)})
    sink = CollectingSink(max_record_bytes=10_000)
    stateful = checkpoint is Checkpoint.STORE
    loop, sink, stop = make_loop(
        source, Echo(keeps_state=stateful), store if stateful else None, sink, checkpoint
    )

    run_to_end(loop, stop)

    assert Counter(sent_ids(sink)) == {f"s{i}": 1 for i in range(8) if i != 2}
    dead = loop.dead
    assert isinstance(dead, MemoryDeadLetters)
    [letter] = dead.letters
    assert "too large" in letter.reason and "s2" in letter.reason
    assert letter.payload()[:100] == big_payloads(8, 2, 20_000)[2][:100]
    offsets = store.load_offsets("echo") if stateful else source.committed
    assert offsets == {PART: 8}


def test_a_dead_letter_whose_delivery_failed_is_sent_again_before_its_offset_passes(
    store: Store,
) -> None:
    source = MemorySource(TOPIC, {0: [b"{not json", *payloads(3)]})
    sink = CollectingSink()
    sink.fail(1)  # the first delivery, dead letter and outputs alike, fails
    loop, sink, stop = make_loop(source, Echo(), store, sink)
    loop.dead = DeadLetters(sink, "echo", "news.dlq")

    run_to_end(loop, stop)

    [letter] = [decode(DeadLetter, value) for value in sink.values("news.dlq")]
    assert letter.payload() == b"{not json"
    assert Counter(sent_ids(sink)) == {"s0": 1, "s1": 1, "s2": 1}
    assert store.load_offsets("echo") == {PART: 4}


# -- fencing of commits that carry no offsets ---------------------------------------------------


class Ticking(Echo):
    """Commits state on idle polls too, as idle-close and timers do."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    def process(
        self, batch: Sequence[Message[ScoredItem]], now: datetime, dead: DeadLetterSink
    ) -> tuple[list[Output], Commit | None]:
        if batch:
            return super().process(batch, now, dead)
        self.ticks += 1
        return [], Commit(stage="echo", state_put={"tick": self.ticks}, state_delete={"s0"})


def test_an_idle_commit_of_a_member_that_lost_its_partition_is_fenced(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(4)})
    logic = Ticking()
    loop, sink, stop = make_loop(source, logic, store)
    loop.step(stop)  # stories 0-3, committed at offset 4

    # Meanwhile another member owns the partition and committed past it.
    store.commit(
        Commit(stage="echo", offsets={PART: 9}, expected={PART: 4}, state_put={"owner": "b"})
    )
    loop.step(stop)  # an idle poll: the zombie's state-only commit

    state = store.load_state("echo")
    assert "tick" not in state and "s0" in state  # the new owner's state is untouched
    assert store.load_offsets("echo") == {PART: 9}
    assert logic.assignments == [[PART], [PART]]  # it re-synced


def test_an_idle_commit_of_the_owner_applies(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(4)})
    loop, sink, stop = make_loop(source, Ticking(), store)
    loop.step(stop)
    loop.step(stop)  # idle

    state = store.load_state("echo")
    assert state["tick"] == 1 and "s0" not in state
    assert store.load_offsets("echo") == {PART: 4}


# -- a stop while the broker is down ------------------------------------------------------------


class DownBroker:
    """The broker's side of a lost connection, as kafka-python shows it: a flush without a
    timeout waits for the records to expire, and a synchronous commit without one retries until
    the coordinator is back. ``down`` is the outage; clearing it ends every wait."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.up = threading.Event()
        self.up.set()

    def fail(self) -> None:
        self.up.clear()
        self.down.set()

    def wait(self, timeout_s: float | None) -> None:
        if not self.up.wait(timeout_s):
            raise KafkaTimeoutError("broker unreachable (simulated)")


class DownSink(CollectingSink):
    def __init__(self, broker: DownBroker) -> None:
        super().__init__()
        self.broker = broker

    def flush(self, timeout: float | None = None) -> None:
        if self._buffer and self.broker.down.is_set():
            self.broker.wait(timeout)
        super().flush(timeout)


class DownSource(MemorySource):
    def __init__(self, broker: DownBroker, values: list[bytes]) -> None:
        super().__init__(TOPIC, {0: values})
        self.broker = broker

    def poll(self, timeout_ms: int = 0, max_records: int | None = None, **kw: Any) -> Any:
        if self.broker.down.is_set():
            return {}
        return super().poll(timeout_ms, max_records)

    def commit(self, offsets: Any = None, timeout_ms: int | None = None) -> None:
        if self.broker.down.is_set():
            self.broker.wait(None if timeout_ms is None else timeout_ms / 1000)
        super().commit(offsets)


def test_a_stop_while_the_broker_is_down_ends_the_pipelined_stage_promptly() -> None:
    broker = DownBroker()
    source = DownSource(broker, payloads(8))
    loop, sink, stop = make_loop(
        source, Echo(keeps_state=False), None, DownSink(broker), Checkpoint.KAFKA
    )
    loop.step(stop)  # batch 1 sent, not yet acknowledged
    broker.fail()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    time.sleep(0.3)

    stop.set()  # SIGTERM
    runner.join(10)
    stuck = runner.is_alive()
    broker.up.set()  # let a stuck loop go, whatever the verdict
    runner.join(10)

    assert not stuck
    assert source.committed == {}  # nothing acknowledged: the batch is replayed on restart


def test_a_tombstone_becomes_a_dead_letter_and_its_offset_passes(store: Store) -> None:
    source = MemorySource(TOPIC, {0: payloads(2)})
    source.append(0, None)  # type: ignore[arg-type]  # a record with no value
    source.append(0, payloads(3)[2])
    loop, sink, stop = make_loop(source, Echo(), store)

    run_to_end(loop, stop)

    dead = loop.dead
    assert isinstance(dead, MemoryDeadLetters)
    [letter] = dead.letters
    assert "tombstone" in letter.reason and letter.offset == 2 and letter.payload() == b""
    assert sent_ids(sink) == ["s0", "s1", "s2"]
    assert store.load_offsets("echo") == {PART: 4}


class LagWatcher(Echo):
    """Echo that records what the runner tells it of its lag before each batch."""

    watches_lag = True

    def __init__(self) -> None:
        super().__init__(keeps_state=False)
        self.told: list[set[Partition]] = []

    def caught_up(self, partitions: set[Partition]) -> None:
        self.told.append(set(partitions))


@pytest.mark.parametrize("upstream_done", [True, False])
def test_a_lag_watcher_is_caught_up_only_while_the_stages_before_it_are(
    upstream_done: bool,
) -> None:
    """Its own input read to the end, but a stage before it stalled with a backlog: the news
    is still on its way, so it must not be told it is caught up (no quiet-window close)."""
    source = MemorySource(TOPIC, {0: payloads(2)})
    logic = LagWatcher()
    loop = StageLoop(
        spec(Checkpoint.KAFKA),
        logic,
        consumer=source,
        producer=CollectingSink(),
        dead=MemoryDeadLetters("echo"),
        store=None,
        sink_topic=TOPIC,
        max_batch=4,
        max_wait_ms=10,
        clock=lambda: T0,
        backoff=FAST_BACKOFF,
        upstream_caught_up=lambda: upstream_done,
    )
    source.subscribe([TOPIC], listener=loop.listener)
    stop = threading.Event()
    for _ in range(3):
        loop.step(stop)

    assert logic.seen == ["s0", "s1"]
    assert logic.told[-1] == ({PART} if upstream_done else set())


def test_a_member_that_lost_its_partition_commits_nothing_before_the_new_owner_does(
    store: Store,
) -> None:
    """Two members, one partition: the group moves it from the first to the second, which has
    committed nothing yet. The first member's idle (state-only) commit must not land: its
    stored offsets still look right, but the second member has claimed the partition."""
    first_logic = Ticking()
    first, _, stop = make_loop(MemorySource(TOPIC, {0: payloads(4)}), first_logic, store)
    first.step(stop)  # stories 0-3, committed at offset 4

    second_logic = Ticking()
    second, _, _ = make_loop(MemorySource(TOPIC, {0: payloads(4)}), second_logic, store)
    second.step(stop)  # assigned: claims the partition, loads its state; nothing new to read
    ticks_of_second = store.load_state("echo")["tick"]

    first_logic.ticks = 100  # what it would write is told apart from the owner's ticks
    first.step(stop)  # the first member does not know yet: an idle commit, fenced

    assert store.load_state("echo")["tick"] == ticks_of_second
    assert first_logic.assignments == [[PART], [PART]]  # it re-synced instead
    second.step(stop)  # the owner's own idle commit applies
    assert store.load_state("echo")["tick"] == ticks_of_second + 1


def test_a_stop_ends_a_source_s_long_wait_on_a_broker_that_is_down() -> None:
    """A source waits out the producer's whole delivery timeout (minutes) so it never sends a
    poll twice; a stop cuts that short, remembering nothing, so the restart sends it again."""
    broker = DownBroker()
    sink = DownSink(broker)
    runner = SourceRunner(stage("ingest"), producer=sink, dead=MemoryDeadLetters("ingest"),
                          sink_topic="news.raw")  # fmt: skip
    runner.ack_timeout_s = 600.0
    broker.fail()
    stop = threading.Event()
    committed: list[bool] = []
    outcome: list[BaseException] = []

    def deliver() -> None:
        try:
            runner.deliver([("s0", scored(0))], consumed=1, commit=lambda: committed.append(True),
                           stop=stop)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - what the caller would see
            outcome.append(exc)

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    stop.set()  # SIGTERM
    thread.join(STOP_GRACE_S + 5)
    took = time.monotonic() - started
    broker.up.set()  # let a stuck delivery go, whatever the verdict
    thread.join(10)

    assert took < STOP_GRACE_S + 3
    assert [type(e) for e in outcome] == [StoppedRetrying] and committed == []


def test_a_stage_checks_its_logic_then_the_broker_before_any_kafka_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finsent.app.ports import free_port
    from finsent.runtime import runner
    from finsent.runtime.kafka_io import BrokerUnreachable

    made: list[str] = []
    monkeypatch.setattr(runner, "make_consumer", lambda *a, **k: made.append("consumer"))
    settings = Settings(cache_dir=tmp_path, kafka_port=free_port())

    def logic(settings: Settings, store: Store | None) -> Any:
        made.append("logic")
        raise ValueError("a bad rules file")  # local inputs first: the broker is not asked

    with pytest.raises(ValueError, match="a bad rules file"):
        runner.run_stage(settings, stage("router"), logic, threading.Event())

    def good(settings: Settings, store: Store | None) -> Any:
        made.append("logic")
        return object()

    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=f"Kafka at {settings.bootstrap_servers}"):
        runner.run_stage(settings, stage("router"), good, threading.Event())
    assert time.monotonic() - started < 6
    assert made == ["logic", "logic"]  # no consumer was made
