"""The stage declarations: one per process, consistent with the topics, ports kept."""

from __future__ import annotations

import pytest

from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.core.stages import (
    STAGE_NAMES,
    STAGES,
    TOPIC_RECORDS,
    Checkpoint,
    consumer_group,
    consumers,
    stage,
)


def test_every_topic_carries_one_declared_record_type() -> None:
    assert set(TOPIC_RECORDS) == set(TOPIC_NAMES)


def test_the_stages_and_their_metrics_ports_are_the_ones_deployments_know() -> None:
    assert {s.name: s.port for s in STAGES} == {
        "ingest": 9405,
        "scorer": 9401,
        "router": 9402,
        "aggregator": 9403,
        "alerter": 9404,
        "notifier": 9406,
    }
    assert tuple(s.name for s in STAGES) == STAGE_NAMES


def test_the_stages_chain_topic_to_topic_in_pipeline_order() -> None:
    produced = set()
    for spec in STAGES:
        if spec.source is not None:
            assert spec.source in produced, f"{spec.name} reads {spec.source}, produced later"
        if spec.sink is not None:
            assert spec.sink in TOPIC_NAMES
            produced.add(spec.sink)


def test_sources_consume_nothing_and_consumers_checkpoint_somewhere() -> None:
    settings = Settings(batch_max_size=10, aggregator_batch_max=999, alerter_batch_max=333)
    for spec in STAGES:
        if spec.source is None:
            assert spec.checkpoint is Checkpoint.NONE and spec.input_type is None
            with pytest.raises(ValueError, match="no batch size"):
                spec.max_batch(settings)
        else:
            assert spec.checkpoint in (Checkpoint.STORE, Checkpoint.KAFKA)
            assert spec.input_type is TOPIC_RECORDS[spec.source]
    assert [s.name for s in consumers()] == [
        "scorer",
        "router",
        "aggregator",
        "alerter",
        "notifier",
    ]
    assert [
        stage(n).max_batch(settings) for n in ("scorer", "router", "aggregator", "alerter")
    ] == [10, 40, 999, 333]
    # Only the scorer keeps no state, so only its offsets live in its Kafka group.
    assert [s.name for s in STAGES if s.checkpoint is Checkpoint.KAFKA] == ["scorer"]
    assert stage("notifier").sink is None and stage("notifier").output_type is None


def test_unknown_stage_names_say_which_are_known() -> None:
    with pytest.raises(KeyError, match="known: ingest, scorer"):
        stage("scorerr")


def test_consumer_groups_are_named_by_run_prefix_and_stage() -> None:
    assert consumer_group("", "scorer") == "finsent-scorer"
    assert consumer_group("backtest-r1.", "router") == "backtest-r1.finsent-router"
