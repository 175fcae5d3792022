"""kill -9 the aggregator mid-stream and restart it: the store's windows equal a clean run exactly.

The aggregator writes window state, results and consumed offsets in one store transaction and
resumes from the stored offsets, so a crash neither loses nor double-counts a story.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer
from tests_support import StageProcesses, wait_until

from finsent.kafka_io import ensure_topics
from finsent.records import ScoredItem, decode
from finsent.settings import Settings
from finsent.store import Store, as_utc, scored_items, windows
from ingest.sample_feed import generate, write_jsonl
from stream.aggregation import make_windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_kill_9_and_restart_loses_nothing_and_counts_nothing_twice(
    pipeline_settings: Settings, stages: StageProcesses, tmp_path
) -> None:
    settings = pipeline_settings
    ensure_topics(settings)
    rows = generate(end=datetime(2026, 1, 10, tzinfo=UTC), hours=24, per_hour=60, seed=11)
    feed = write_jsonl(rows, tmp_path / "feed.jsonl")
    stages.start("scorer", "scorer")
    assert stages.start("replay", "ingest", "replay", str(feed), "--no-progress").wait(120) == 0

    consumer = KafkaConsumer(
        settings.topic("news.scored"),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    scored: list[ScoredItem] = []
    wait_until(
        lambda: (
            scored.extend(decode(ScoredItem, m.value) for m in consumer) or len(scored) >= len(rows)
        ),
        60,
        "every story scored",
    )
    consumer.close()
    # The reference: the pure window core over the same scored stream, in one go.
    reference = make_windows(settings)
    now = datetime.now(UTC)
    expected = {}
    for item in scored:
        for w in reference.add(item, now).closed:
            expected[(w.key, w.window_start)] = w.count

    store = Store(settings.database_url)
    # Small batches: many store transactions, so the kill lands between two of them.
    stages.env["FINSENT_BATCH_MAX_SIZE"] = "2"
    stages.env["FINSENT_INSTANCE_ID"] = "a1"
    first = stages.start("aggregator", "aggregator")
    wait_until(
        lambda: len(store.query(windows)) >= len(expected) // 3, 60, "a third of the windows"
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    partial = len(store.query(windows))
    assert 0 < partial < len(expected), "the kill must land mid-stream"

    stages.start("aggregator-2", "aggregator")
    restarted = time.monotonic()
    wait_until(lambda: len(store.query(windows)) >= len(expected), 90, "all windows after restart")
    wait_until(lambda: len(store.query(scored_items)) >= len(scored), 30, "the last open window")
    # Static membership: the restarted member takes the dead one's place without waiting for
    # its session to time out.
    assert time.monotonic() - restarted < settings.session_timeout_ms / 1000
    got = {(r["key"], as_utc(r["window_start"])): r["count"] for r in store.query(windows)}
    assert got == expected
    assert len(store.query(scored_items)) == len(scored)
