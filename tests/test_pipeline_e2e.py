"""End to end through the real broker: replay → scorer → router → aggregator → alerter, as processes.

A known input of N stories goes in; the exact window counts and exactly one alert come out, and
every bad payload lands in the dead-letter topic with its stage and reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from support.records import news_item
from support.stages import CRASH_HEADLINES, StageProcesses, read_topic, wait_until

from finsent.core.records import Alert, DeadLetter, WindowStat, decode, encode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import Store, alert_events, alerts, as_utc, scored_items, windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)
OIL = "Oil prices steady as traders await inventory data"  # Energy | Oil, neutral
BANK = "Harbor Trust Bank opens regional offices, adds bank staff"  # Financials, neutral
HARBOR = "company:harbor-trust-bank"  # a bank without a ticker: its own series, by name
# Eight different stories, not one repeated: the alerter counts novelty-weighted stories, so
# a single syndicated headline would (rightly) not fire. Financials, negative.
CRASHES = CRASH_HEADLINES


def story(n: int, title: str, at: datetime, tickers: list[str] | None = None) -> dict:
    return {
        "title": f"{title} ({n})",  # distinct titles: ingest drops exact-title repeats
        "published_at": at.isoformat(),
        "source": "test-wire",
        "url": f"https://news.test/{n}",
        "tickers": tickers or [],
    }


def build_feed() -> tuple[list[dict], dict[tuple[str, datetime], int]]:
    """Six quiet windows, one with a bank crash, one calm again, then a story that closes it."""
    rows, expected = [], Counter()
    n = 0

    def add(title: str, window: int, minute: int, keys: list[str], tickers=None) -> None:
        nonlocal n
        n += 1
        start = T0 + window * W
        rows.append(story(n, title, start + timedelta(minutes=minute), tickers))
        for key in ["overall", "source:test-wire", *keys]:
            expected[(key, start)] += 1

    for w in range(6):
        for m in range(3):
            add(OIL, w, 1 + m, ["topic:Energy | Oil"])
            add(BANK, w, 5 + m, ["topic:Financials", HARBOR])
    for m in range(3):
        add(OIL, 6, 1 + m, ["topic:Energy | Oil"])
    for m, crash in enumerate(CRASHES):
        add(crash, 6, 4 + m, ["topic:Financials", "ticker:NWB"], tickers=["NWB"])
    for m in range(2):
        add(OIL, 7, 1 + m, ["topic:Energy | Oil"])
        add(BANK, 7, 5 + m, ["topic:Financials", HARBOR])
    # Closes window 7 (watermark = its time - 60 s grace); its own window stays open.
    n += 1
    rows.append(story(n, OIL, T0 + 8 * W + timedelta(minutes=2)))
    return rows, dict(expected)


def test_known_input_gives_exact_windows_and_one_alert(
    pipeline_settings: Settings, stages: StageProcesses, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "windows": ("15m",),
            "grace_seconds": 60,
            "allowed_lateness_seconds": 0,
            "window_emit": "final",  # exact topic contents; running updates are tested apart
            "alert_keys": ("topic:*",),
            "alert_scales": ("15m",),  # two hours of feed: the detector judges its windows
        }
    )
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    rows, expected = build_feed()
    assert len(rows) == 52
    feed = tmp_path / "feed.jsonl"
    with feed.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        fh.write(json.dumps({"published_at": T0.isoformat()}) + "\n")  # no title: ingest DLQ

    # Bad payloads straight onto news.raw: the scorer must route them, not crash.
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    producer.send(settings.topic("news.raw"), b"{not json").get(30)
    unknown_version = encode(
        news_item(id="v9", source="s", title="From the future", published_at=T0)
    ).replace(b'"schema":1', b'"schema":9')
    producer.send(settings.topic("news.raw"), unknown_version).get(30)
    producer.close()

    for stage in ("scorer", "router", "aggregator", "alerter"):
        stages.start(stage, stage)
    replay = stages.start("replay", "ingest", "replay", str(feed), "--no-progress")
    assert replay.wait(120) == 0, stages.log("replay")
    assert "read 53, sent 52, duplicates 0, dead letters 1" in stages.log("replay")

    store = Store(settings.database_url)
    n_windows = len(expected)

    def windows_done() -> bool:
        return len(store.query(windows)) >= n_windows and len(store.query(alert_events)) >= 2

    wait_until(
        windows_done,
        90,
        f"{n_windows} windows and 2 alert events in the store",
        context=stages.tails,
    )

    got = {(r["key"], as_utc(r["window_start"])): r["count"] for r in store.query(windows)}
    assert got == expected
    assert len(store.query(scored_items)) == 52  # stored on arrival, open window or not

    [alert_row] = store.query(alerts)
    assert alert_row["key"] == "topic:Financials"
    assert alert_row["state"] == "resolved"
    assert as_utc(alert_row["started_at"]) == as_utc(alert_row["window_start"]) == T0 + 6 * W
    assert alert_row["neg_share"] == 1.0  # the row keeps the evidence of the window that fired
    assert as_utc(alert_row["updated_at"]) == T0 + 8 * W  # the end of the window that resolved it
    events = store.query(alert_events, order_by=[alert_events.c.at])
    assert [e["state"] for e in events] == ["firing", "resolved"]
    fired = decode(Alert, json.dumps(events[0]["payload"]))
    assert fired.neg_share == 1.0 and fired.count == 8  # window 6 holds the 8 crash stories
    assert {h.title.rsplit(" (", 1)[0] for h in fired.headlines} <= set(CRASHES)
    assert len(fired.headlines) == 3

    # The Kafka topics carry the same records.
    topic_windows = [
        decode(WindowStat, v) for v in read_values(settings, "sentiment.windows", n_windows)
    ]
    assert Counter((w.key, w.window_start) for w in topic_windows) == Counter(expected.keys())
    topic_alerts = [decode(Alert, v) for v in read_values(settings, "alerts", 2)]
    assert sorted(a.state for a in topic_alerts) == ["firing", "resolved"]
    assert len({a.id for a in topic_alerts}) == 1

    letters = [decode(DeadLetter, v) for v in read_values(settings, "news.dlq", 3)]
    by_stage = Counter(letter.stage for letter in letters)
    assert by_stage == {"scorer": 2, "ingest": 1}
    reasons = " | ".join(letter.reason for letter in letters)
    assert (
        "Invalid JSON" in reasons
        and "unknown schema version" in reasons
        and "title is missing" in reasons
    )
    assert {letter.payload() for letter in letters if letter.stage == "scorer"} == {
        b"{not json",
        unknown_version,
    }

    # Each stage serves its Prometheus metrics, and they count what went through.
    points = sum(expected.values()) + 3  # and the closing story's three series, still open
    aggregator = scrape(stages.log("aggregator"))
    assert aggregator['finsent_items_total{stage="aggregator"}'] == points
    assert aggregator['finsent_window_emits_total{kind="final",stage="aggregator"}'] == n_windows
    assert aggregator['finsent_late_items_total{stage="aggregator"}'] == 0
    lag = [v for k, v in aggregator.items() if k.startswith("finsent_consumer_lag{")]
    assert lag == [0.0]
    assert aggregator['finsent_batch_seconds_count{stage="aggregator"}'] >= 1
    scorer = scrape(stages.log("scorer"))
    assert scorer['finsent_items_total{stage="scorer"}'] == 54  # 52 stories and 2 bad payloads
    assert scorer['finsent_outputs_total{stage="scorer"}'] == 52
    assert sum(v for k, v in scorer.items() if k.startswith("finsent_dead_letters_total")) == 2
    assert scrape(stages.log("router"))['finsent_outputs_total{stage="router"}'] == points
    # And each answers its health beside them: its loop goes round.
    for name in ("scorer", "router", "aggregator", "alerter"):
        [url] = re.findall(r"metrics on (http://\S+)/metrics", stages.log(name))
        health = httpx.get(url + "/healthz", timeout=10)
        assert (health.status_code, health.json()["status"]) == (200, "ok"), name

    # SIGTERM: every stage finishes its batch and exits cleanly.
    assert stages.stop_all() == {
        "scorer": 0,
        "router": 0,
        "aggregator": 0,
        "alerter": 0,
        "replay": 0,
    }
    # Stopped, so nothing more can arrive on the topics, and nothing more did.
    for name, count in (("sentiment.windows", n_windows), ("alerts", 2), ("news.dlq", 3)):
        read_values(settings, name, count)


def read_values(settings: Settings, name: str, expected: int) -> list[bytes]:
    values = [m.value for m in read_topic(settings, name)]
    assert len(values) == expected, f"{name}: {len(values)} records, expected {expected}"
    return values


def scrape(log: str) -> dict[str, float]:
    """The samples of the metrics endpoint a stage announced in its log."""
    [url] = re.findall(r"metrics on (http://\S+/metrics)", log)
    samples = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
