"""Consumer lag of every stage: the store's offsets, and the scorer's from its Kafka group."""

from __future__ import annotations

import threading

from finsent.dashboard.lag import (
    BackgroundProbe,
    EndOffsetsProbe,
    Lag,
    compute_lag,
    consumer_lag,
    held_groups,
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
