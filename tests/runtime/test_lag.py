"""Consumer lag of every stage: the store's offsets, and the scorer's from its Kafka group;
the probe that fetches the end offsets without ever keeping a page waiting; and whether the
stages before one stage have read all their input."""

from __future__ import annotations

import threading
import time

from finsent.core.stages import stage
from finsent.runtime.lag import (
    BackgroundProbe,
    EndOffsetsProbe,
    Lag,
    UpstreamLag,
    compute_lag,
    consumer_lag,
    held_groups,
    probe_for,
    upstream_of,
)


def test_the_scorers_group_is_found_from_the_run_prefix_of_the_stored_offsets() -> None:
    stored = {
        ("router", "news.scored", 0): 5,
        ("aggregator", "demo-1.news.keyed", 3): 7,  # another run in the same store
        ("alerter", "oddly-named", 0): 1,  # not its declared source: no prefix to infer
    }

    assert held_groups(stored) == [
        ("scorer", "demo-1.finsent-scorer", "demo-1.news.raw"),
        ("scorer", "finsent-scorer", "news.raw"),
    ]


def test_held_lag_adds_to_the_stored_stages() -> None:
    stored = {("router", "news.scored", 0): 90}

    lag = compute_lag(stored, {("news.scored", 0): 100}, {"scorer": 7})

    assert lag == Lag(total=17, by_stage={"router": 10, "scorer": 7})


def test_consumer_lag_asks_the_scorers_group_beside_the_end_offsets() -> None:
    asked: list[list[tuple[str, str, str]]] = []
    released = threading.Event()

    def group_lag(groups: list[tuple[str, str, str]]) -> dict[str, int]:
        asked.append(groups)
        released.wait(5)
        return {"scorer": 3}

    def ends(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        released.set()  # both questions are out before either answer is in
        return {p: 100 for p in partitions}

    probe = EndOffsetsProbe(ends, held=BackgroundProbe(group_lag))

    lag = consumer_lag({("router", "news.scored", 0): 60}, probe)

    assert asked == [[("scorer", "finsent-scorer", "news.raw")]]
    assert lag == Lag(total=43, by_stage={"router": 40, "scorer": 3})


def test_without_an_answer_from_the_group_the_stored_stages_still_show() -> None:
    def group_lag(groups: list[tuple[str, str, str]]) -> dict[str, int]:
        raise ConnectionError("coordinator not available")

    probe = EndOffsetsProbe(lambda ps: {p: 10 for p in ps}, held=BackgroundProbe(group_lag))

    assert consumer_lag({("router", "news.scored", 0): 4}, probe) == Lag(6, {"router": 6})


def test_compute_lag_per_stage() -> None:
    stored = {
        ("router", "news.scored", 0): 90,
        ("router", "news.scored", 1): 50,
        ("aggregator", "news.keyed", 0): 410,  # read past an end fetched a moment earlier
        ("alerter", "sentiment.windows", 0): 3,  # no end known: left out
    }
    ends = {("news.scored", 0): 100, ("news.scored", 1): 55, ("news.keyed", 0): 400}

    lag = compute_lag(stored, ends)

    assert lag == Lag(total=15, by_stage={"router": 15, "aggregator": 0})
    assert lag.describe() == "aggregator 0, router 15"


class FakeKafka:
    """End offsets that arrive when the test says so, or an error."""

    def __init__(self, ends: dict[tuple[str, int], int] | None = None) -> None:
        self.ends = ends if ends is not None else {("t", 0): 10}
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self.calls += 1
        self.release.wait(10)
        if self.fail:
            raise ConnectionError("no broker")
        return {p: self.ends[p] for p in partitions}


def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_probe_answers_and_caches_for_max_age() -> None:
    kafka = FakeKafka()
    now = [0.0]
    probe = EndOffsetsProbe(kafka, max_age=5, wait=1, clock=lambda: now[0])

    assert probe.get([("t", 0)]) == {("t", 0): 10}
    now[0] = 4.0
    assert probe.get([("t", 0)]) == {("t", 0): 10}
    assert kafka.calls == 1  # fresh enough: no second call

    now[0] = 6.0
    kafka.ends = {("t", 0): 12}
    kafka.release.clear()  # hold the refresh, or it may land before get() looks again
    assert probe.get([("t", 0)]) == {("t", 0): 10}  # the last answer at once; refreshing behind
    kafka.release.set()
    eventually(lambda: kafka.calls == 2 and probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 12}
    assert probe.get([]) == {}


def test_probe_never_keeps_a_page_waiting_on_a_slow_kafka() -> None:
    kafka = FakeKafka()
    kafka.release.clear()
    probe = EndOffsetsProbe(kafka, wait=0.2)

    started = time.monotonic()
    assert probe.get([("t", 0)]) is None  # waited once, briefly
    assert probe.get([("t", 0)]) is None  # and not again while Kafka is still slow
    assert time.monotonic() - started < 1.0
    assert kafka.calls == 1  # one request in flight at a time

    kafka.release.set()
    eventually(lambda: probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 10}


def test_probe_reads_na_after_a_failure_and_when_its_answer_is_stale() -> None:
    kafka = FakeKafka()
    kafka.fail = True
    now = [0.0]
    probe = EndOffsetsProbe(kafka, max_age=5, stale_after=15, clock=lambda: now[0])

    assert probe.get([("t", 0)]) is None

    kafka.fail = False
    now[0] = 6.0
    probe.get([("t", 0)])
    eventually(lambda: probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 10}

    kafka.release.clear()  # Kafka hangs from now on
    now[0] = 12.0
    assert probe.get([("t", 0)]) == {("t", 0): 10}  # 6 s old: still shown
    now[0] = 30.0
    assert probe.get([("t", 0)]) is None  # too old to show
    kafka.release.set()


def test_consumer_lag_needs_stored_offsets_and_an_answer() -> None:
    kafka = FakeKafka({("news.scored", 0): 100})

    assert consumer_lag({}, EndOffsetsProbe(kafka)) is None
    assert kafka.calls == 0  # nothing stored: Kafka is not asked
    lag = consumer_lag({("router", "news.scored", 0): 60}, EndOffsetsProbe(kafka))
    assert lag == Lag(total=40, by_stage={"router": 40})


def test_an_unreachable_kafka_reads_na_within_about_a_second() -> None:
    probe = probe_for("127.0.0.1:1")  # nothing listens on port 1

    started = time.monotonic()
    lag = consumer_lag({("router", "news.scored", 0): 1}, probe)

    assert lag is None
    assert time.monotonic() - started < 1.5
    assert probe_for("127.0.0.1:1") is probe  # one client per broker address


def test_lag_labels_are_sorted_by_stage() -> None:
    assert Lag(3, {"router": 1, "aggregator": 2}).describe() == "aggregator 2, router 1"


# -- what a stage asks of the stages before it ---------------------------------------------


def test_the_stages_before_the_aggregator_are_the_router_then_the_scorer() -> None:
    assert [s.name for s in upstream_of(stage("aggregator"))] == ["router", "scorer"]
    assert upstream_of(stage("scorer")) == []


def upstream_probe(
    stored: dict[str, dict[tuple[str, int], int]],
    ends: int,
    scorer_lag: int,
    released: threading.Event | None = None,
) -> tuple[UpstreamLag, list[list[tuple[str, str, str]]]]:
    """`released`, when given, holds Kafka's answer about the groups until it is set."""
    asked: list[list[tuple[str, str, str]]] = []

    def group_lag(groups: list[tuple[str, str, str]]) -> dict[str, int]:
        asked.append(groups)
        if released is not None:
            released.wait(5)
        return {"scorer": scorer_lag}

    probe = EndOffsetsProbe(
        lambda partitions: {p: ends for p in partitions}, held=BackgroundProbe(group_lag)
    )
    upstream = UpstreamLag(
        upstream_of(stage("aggregator")), "run-1.", lambda name: stored.get(name, {}), probe
    )
    return upstream, asked


def answered(upstream: UpstreamLag) -> bool:
    """The probe's answer once its background questions are in (a first ask never waits)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        held = upstream.probe.held
        if upstream.probe._running is None and (held is None or held._running is None):
            break
        time.sleep(0.01)
    return upstream.caught_up()


def test_upstream_is_caught_up_only_once_every_stage_before_has_read_to_the_end() -> None:
    router_done = {"router": {("run-1.news.scored", 0): 40}}

    released = threading.Event()  # an instant answer could beat the first check
    quiet, asked = upstream_probe(router_done, ends=40, scorer_lag=0, released=released)
    assert quiet.caught_up() is False  # no answer yet: not known to be caught up
    released.set()
    assert answered(quiet) is True
    assert asked[0] == [("scorer", "run-1.finsent-scorer", "run-1.news.raw")]

    router_behind, _ = upstream_probe(router_done, ends=55, scorer_lag=0)
    assert answered(router_behind) is False
    scorer_behind, _ = upstream_probe(router_done, ends=40, scorer_lag=3)
    assert answered(scorer_behind) is False


def test_upstream_is_not_caught_up_while_kafka_gives_no_answer() -> None:
    def down(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise ConnectionError("broker down")

    upstream = UpstreamLag(
        upstream_of(stage("aggregator")),
        "",
        lambda name: {("news.scored", 0): 1},
        EndOffsetsProbe(down, held=BackgroundProbe(lambda groups: {"scorer": 0})),
    )
    assert answered(upstream) is False
