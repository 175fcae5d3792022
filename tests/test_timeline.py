"""Timeline acceptance: news at t gives an alert between t1 and t2, and a resolved notice later.

The whole path runs as production runs it: replay (at 60x) → scorer → router → aggregator →
alerter → notifier, as separate processes on a real broker, delivering to a Slack webhook
(a loopback HTTP server) and to an SMTP server (aiosmtpd on loopback).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.notify_loopback import SmtpServer, WebhookServer
from support.stages import (
    CRASH_HEADLINES,
    StageProcesses,
    groups_joined,
    read_topic,
    wait_until,
)

from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import Store, alert_events, deliveries

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
SPEED = 60  # event seconds per wall second
OIL = "Oil prices steady as traders await inventory data"
BANKS = (
    "Harbor Trust Bank opens regional offices, adds bank staff",
    "Harbor Trust Bank publishes annual bank review on schedule",
    "Harbor Trust Bank expands mortgage lending as bank deposits hold steady",
)
CRASHES = CRASH_HEADLINES
CRASH_MINUTE = 10
# From the first crash story on news.raw to the Slack hand-off. The lower bound is physics:
# the crash window can only close once event time passes its end, (60 - 3) s of event time
# later, i.e. about 1 s of wall time at 60x. The upper bound is the product's promise.
T1, T2 = 0.9, 15.0


def feed_rows() -> list[dict]:
    rows = []

    def add(title: str, at: datetime) -> None:
        n = len(rows)
        rows.append(
            {
                "title": f"{title} ({n})",
                "published_at": at.isoformat(),
                "source": "timeline-wire",
                "url": f"https://news.test/t/{n}",
            }
        )

    for minute in range(15):
        start = T0 + timedelta(minutes=minute)
        if minute == CRASH_MINUTE:
            for i, title in enumerate(CRASHES):
                add(title, start + timedelta(seconds=3 + 5 * i))
            add(OIL, start + timedelta(seconds=50))
            continue
        for i in range(3):
            add(OIL, start + timedelta(seconds=5 + 10 * i))
            add(BANKS[(minute + i) % 3], start + timedelta(seconds=35 + 10 * i))
    return rows


class Arrivals(threading.Thread):
    """Notes the wall time each accepted webhook post was first seen."""

    def __init__(self, server: WebhookServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.seen: list[tuple[float, dict]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            accepted = self.server.accepted
            for post in accepted[len(self.seen) :]:
                self.seen.append((time.time(), post.json()))
            time.sleep(0.02)


def first_crash_sent_at(settings: Settings) -> float:
    for record in read_topic(settings, "news.raw"):
        if CRASHES[0] in json.loads(record.value)["title"]:
            return record.timestamp / 1000  # the producer's wall clock, ms
    raise AssertionError("the first crash story never reached news.raw")


def test_news_at_t_alerts_between_t1_and_t2_then_resolves(
    pipeline_settings: Settings, stages: StageProcesses, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    with WebhookServer() as slack, SmtpServer(mode="none") as smtp:
        rules.write_text(
            "grouping: {group_wait: 0s, group_interval: 0s, repeat_interval: 4h}\n"
            "channels:\n"
            "  ops: {type: slack}\n"
            f"  risk: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none,\n"
            "         sender: finsent@test, to: [risk@test]}\n"
            "routes: [{match: 'topic:*', channels: [ops, risk]}]\n"
        )
        settings = pipeline_settings.model_copy(
            update={
                "windows": ("1m",),
                "grace_seconds": 0,
                "allowed_lateness_seconds": 0,
                "window_emit": "final",
                "alert_keys": ("topic:*",),
                "alert_scales": ("1m",),  # fifteen minutes of feed: judged minute by minute
                "alert_rules_file": rules,
                "batch_max_wait_ms": 100,
            }
        )
        stages.env.update(settings.child_env())
        stages.env["FINSENT_SLACK_WEBHOOK_URL"] = slack.url("/services/T0/B0/secret-token")
        ensure_topics(settings)
        feed = tmp_path / "feed.jsonl"
        feed.write_text("".join(json.dumps(r) + "\n" for r in feed_rows()))

        names = ("scorer", "router", "aggregator", "alerter", "notifier")
        for stage in names:
            stages.start(stage, stage)
        # Joined: the timeline measures the pipeline, not start-up.
        wait_until(lambda: groups_joined(settings, names), 60, "the stages' groups", 0.2,
                   context=stages.tails)  # fmt: skip
        arrivals = Arrivals(slack)
        arrivals.start()
        replay = stages.start(
            "replay", "ingest", "replay", str(feed), "--speed", str(SPEED), "--no-progress"
        )
        assert replay.wait(120) == 0, stages.log("replay")
        wait_until(lambda: len(arrivals.seen) >= 2, 60, "firing and resolved posts", 0.1,
                   context=stages.tails)  # fmt: skip
        time.sleep(2)  # nothing more may follow
        arrivals.stop.set()

        t = first_crash_sent_at(settings)
        (fired_at, fired), (resolved_at, resolved) = arrivals.seen
        assert len(arrivals.seen) == 2, "exactly one firing and one resolved notice"
        print(f"news → Slack: firing {fired_at - t:.2f} s, resolved {resolved_at - t:.2f} s")
        assert T1 <= fired_at - t <= T2, f"alert {fired_at - t:.2f} s after the news"
        assert fired_at < resolved_at
        fired_text = json.dumps(fired)
        assert "topic:Financials" in fired_text and "FIRING" in fired_text.upper()
        assert any(title.split(" (")[0][:30] in fired_text for title in CRASHES)
        assert "RESOLVED" in json.dumps(resolved).upper()

        wait_until(lambda: len(smtp.messages) >= 2, 20, "two emails", context=stages.tails)
        subjects = [m.message["subject"] for m in smtp.messages]
        assert "topic:Financials" in subjects[0] and "topic:Financials" in subjects[1]

    store = Store(settings.database_url)
    events = store.query(alert_events, order_by=[alert_events.c.at])
    assert [e["state"] for e in events] == ["firing", "resolved"]
    assert events[0]["window_start"].replace(tzinfo=UTC) == T0 + timedelta(minutes=CRASH_MINUTE)
    logged = store.query(deliveries)
    assert sorted((r["channel"], r["kind"], r["status"]) for r in logged) == [
        ("ops", "firing", "delivered"),
        ("ops", "resolved", "delivered"),
        ("risk", "firing", "delivered"),
        ("risk", "resolved", "delivered"),
    ]
    assert "secret-token" not in stages.log("notifier")
