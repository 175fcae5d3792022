"""Timeline acceptance of issue 18 through a real broker: analysts' corrections, a retrain
that promotes, the running scorer swapping models between batches, and a rollback.

The `finsent scorer` and `finsent router` processes run as in production. Stories scored
before the promotion carry the old version, those after it the new one, and after the
rollback the old one again; every story is scored and stored exactly once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from support import SHARED_DATASETS
from support.records import news_item
from support.stages import StageProcesses, read_topic

from finsent.core.records import ScoredItem, decode, encode
from finsent.core.settings import Settings
from finsent.model.corrections import Correction
from finsent.model.gate import GateRule
from finsent.model.registry import ModelRegistry, RegistryConfig
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import Store, scored_items

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.weights]
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
# The house view the analysts teach: this miner's special dividends are bad news (it pays
# them instead of investing), and they are metals stories.
TAUGHT = [
    f"Glimmerton Mining to pay special dividend of {c} cents a share" for c in range(5, 25, 2)
]
OTHER = [
    "Fed holds rates steady and signals patience",
    "Oil rises as OPEC+ extends output cuts",
    "Acme Corp to hold its annual general meeting on May 5",
    "Northwind Bank shares plunge as losses mount",
    "Treasury yields edge higher ahead of jobs data",
]


def send(settings: Settings, titles: list[str], prefix: str, start: datetime) -> list[str]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    ids = []
    for n, title in enumerate(titles):
        item = news_item(id=f"{prefix}{n}", title=title, published_at=start + timedelta(minutes=n))
        producer.send(settings.topic("news.raw"), encode(item)).get(30)
        ids.append(item.id)
    producer.close()
    return ids


def wait_stored(store: Store, count: int, stages: StageProcesses, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while store.count(scored_items) < count:
        assert time.monotonic() < deadline, stages.tails()
        time.sleep(0.5)


def wait_log(stages: StageProcesses, name: str, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in stages.log(name):
        assert time.monotonic() < deadline, f"{text!r} not in the {name} log:\n{stages.tails()}"
        time.sleep(0.5)


def test_corrections_retrain_promote_swap_and_roll_back(
    pipeline_settings: Settings, stages: StageProcesses
) -> None:
    if not (SHARED_DATASETS / "financial_phrasebank").is_dir():
        pytest.skip("the training datasets are not beside the checkout")
    from finsent.model.data import standard_corpus
    from finsent.model.retrain import RetrainConfig, retrain

    settings = pipeline_settings.model_copy(
        update={"scorer": "attention", "model_poll_seconds": 1.0, "model_threads": 1}
    )
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    store = Store(settings.database_url)
    registry = ModelRegistry(store, RegistryConfig.from_settings(settings))
    shipped = registry.active_version()
    stages.start("scorer", "scorer")
    stages.start("router", "router")

    before = send(
        settings, [*OTHER, "Glimmerton Mining to pay special dividend of 4 cents"], "a", T0
    )
    wait_stored(store, len(before), stages)

    # Analysts correct ten stories; the newest two are held out for the gate.
    store.add_labels(
        [
            Correction(
                story_id=f"g{n}",
                text=title,
                sentiment="negative",
                topic="Gold | Metals | Materials",
                by="ann",
                at=T0 + timedelta(hours=1, minutes=n),
                origin="cli",
            ).row()
            for n, title in enumerate(TAUGHT)
        ]
    )
    # A tiny retrain: a sample of the base data, a few steps. The gate's tolerance on the
    # fixed splits is wide here (40 texts each move a lot); its own tests hold it to account.
    result = retrain(
        store,
        registry,
        standard_corpus(SHARED_DATASETS),
        RetrainConfig(base_examples=64, eval_limit=40, epochs=3, batch_size=16, encoder_lr=1e-4),
        GateRule(tolerance=0.5),
        now=datetime.now(UTC),
        by="timeline-test",
        progress=False,
    )
    assert result.decision.passed and result.promoted, result.decision.reasons
    assert result.held_out == 2  # the two newest corrected stories
    candidate = result.version
    assert registry.active_version() == candidate != shipped
    wait_log(stages, "scorer", f"→ {candidate}")

    after = send(
        settings, ["Glimmerton Mining to pay special dividend of 6 cents", *OTHER], "b", T0
    )
    wait_stored(store, len(before) + len(after), stages)

    assert registry.rollback(by="ann", reason="test", now=datetime.now(UTC)) == (candidate, shipped)
    wait_log(stages, "scorer", f"{candidate} → {shipped}")
    rolled_back = send(settings, OTHER[:2], "c", T0)
    wait_stored(store, len(before) + len(after) + len(rolled_back), stages)
    assert stages.stop_all() == {"scorer": 0, "router": 0}

    records = [decode(ScoredItem, r.value) for r in read_topic(settings, "news.scored")]
    ids = [r.item.id for r in records]
    assert sorted(ids) == sorted(before + after + rolled_back)  # none lost, none scored twice
    version_of = {r.item.id: r.model_version.split("/")[0] for r in records}
    assert {version_of[i] for i in before} == {shipped}
    assert {version_of[i] for i in after} == {candidate}
    assert {version_of[i] for i in rolled_back} == {shipped}
    stored = {row["id"]: row for row in store.query(scored_items)}
    assert {stored[i]["model_version"].split("/")[0] for i in after} == {candidate}
    learnt = next(r for r in records if r.item.id == "b0")
    assert learnt.sentiment == "negative" and learnt.topic == "Gold | Metals | Materials"
    store.close()
