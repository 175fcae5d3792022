"""Shared fixtures. Pipeline tests run against a real Kafka broker that this session starts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from support.stages import StageProcesses

from finsent.app.kafka_local import LocalKafka
from finsent.app.ports import free_port
from finsent.core.settings import Settings

pytest_plugins = ["support.postgres"]

# Shared 2-core machines are noisy: judge properties by their examples, not their timing.
hypothesis_settings.register_profile(
    "finsent", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
hypothesis_settings.load_profile("finsent")

# A test that asks for a server (even through another fixture) carries its marker, so that
# `-m "not kafka and not postgres"` (make test-fast) never starts one.
SERVER_MARKERS = {"kafka_broker": "kafka", "postgres_server": "postgres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in SERVER_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and marker not in item.keywords:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A real single-node Kafka 4 on free loopback ports, for the whole test session."""
    settings = Settings(kafka_port=free_port(), kafka_controller_port=free_port(), partitions=1)
    broker = LocalKafka(settings, home=tmp_path_factory.mktemp("kafka-broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def pipeline_settings(kafka_broker: LocalKafka, tmp_path: Path) -> Settings:
    """Settings isolated per test: a topic prefix of its own and a fresh SQLite store."""
    return Settings(
        kafka_port=kafka_broker.port,
        kafka_controller_port=kafka_broker.controller_port,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        cache_dir=tmp_path / "cache",
        partitions=1,
        # Exact-count pipeline tests need the deterministic keyword topics; the attention
        # model's own pipeline test asks for it explicitly.
        scorer="lexicon",
    )


@pytest.fixture
def stages(pipeline_settings: Settings, tmp_path: Path) -> Iterator[StageProcesses]:
    procs = StageProcesses(pipeline_settings, tmp_path)
    yield procs
    procs.stop_all()
