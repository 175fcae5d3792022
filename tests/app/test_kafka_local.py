from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from finsent.app.kafka_local import KafkaLaunchError, LocalKafka, new_cluster_id
from finsent.app.ports import free_port
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics

# Only the tests marked `kafka` run a broker; the others check start-up errors and start none.


@pytest.mark.kafka
def test_start_is_idempotent(kafka_broker: LocalKafka) -> None:
    before = kafka_broker.status()
    assert before.running
    again = kafka_broker.start()
    assert again.pid == before.pid and again.running


@pytest.mark.kafka
def test_topics_are_created_with_configured_partitions(pipeline_settings: Settings) -> None:
    settings = pipeline_settings.model_copy(update={"partitions_per_topic": {"news.raw": 4}})
    ensure_topics(settings)
    ensure_topics(settings)  # idempotent
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        assert len(consumer.partitions_for_topic(settings.topic("news.raw"))) == 4
        assert len(consumer.partitions_for_topic(settings.topic("news.dlq"))) == 1
    finally:
        consumer.close()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        broker = LocalKafka(
            Settings(kafka_port=port, kafka_controller_port=free_port()), home=tmp_path
        )
        with pytest.raises(KafkaLaunchError, match=f"port 127.0.0.1:{port} is already in use"):
            broker.start()


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    broker = LocalKafka(
        Settings(kafka_port=free_port(), kafka_controller_port=free_port()), home=tmp_path
    )
    with pytest.raises(KafkaLaunchError, match="Java 17 or newer is needed"):
        broker.start()


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "mvn" else real_which(name))
    settings = Settings(
        cache_dir=tmp_path / "empty-cache",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
    )
    with pytest.raises(KafkaLaunchError, match=r"Maven \(mvn\) is needed"):
        LocalKafka(settings).start()


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_restart_keeps_data(tmp_path: Path) -> None:
    settings = Settings(kafka_port=free_port(), kafka_controller_port=free_port(), partitions=1)
    broker = LocalKafka(settings, home=tmp_path / "broker")
    broker.start()
    try:
        ensure_topics(settings, ["news.raw"])
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        producer.send("news.raw", b"kept").get(timeout=30)
        producer.close()
        assert broker.stop()
        assert not broker.status().running
        broker.start()
        consumer = KafkaConsumer(
            "news.raw",
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=20_000,
        )
        assert next(iter(consumer)).value == b"kept"
        consumer.close()
    finally:
        broker.stop()
    assert not broker.stop()  # already stopped: says so, does not fail


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids) and all(len(i) == 22 for i in ids)
