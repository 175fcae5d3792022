"""Alert hand-off latency: from a window's close to the Slack and email hand-off.

The real ``finsent alerter`` and ``finsent notifier`` processes run on a local Kafka broker. The
bench plays the aggregator: for each of N series it emits quiet closed windows, then one that
spikes, onto ``sentiment.windows``. Latency is the time from producing the spiking window (its
close) to the loopback Slack webhook receiving the alert, and to the loopback SMTP server
accepting the email. Reference, measured in the same run: one bare HTTP POST to the same
webhook, i.e. what the hand-off itself costs. Prints p50, p95 and max.

    .venv/bin/python bench/bench_alerts.py [--series 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores
from kafka import KafkaProducer

from finsent.app.kafka_local import LocalKafka
from finsent.app.launch import finsent_command
from finsent.app.ports import free_port
from finsent.app.supervisor import Supervisor
from finsent.core.records import WindowStat, encode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


def _load_loopback():
    """The tests' loopback Slack and SMTP servers (tests/support is not installed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support import notify_loopback

    return notify_loopback


def window(key: str, i: int, neg_share: float) -> WindowStat:
    start = T0 + i * W
    return WindowStat(
        key=key,
        window_start=start,
        window_end=start + W,
        count=20,
        weighted_count=20.0,
        mean_score=-neg_share,
        weighted_mean_score=-neg_share,
        neg_share=neg_share,
        weighted_neg_share=neg_share,
        pos_share=0.0,
        emitted_at=datetime.now(UTC),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=40, help="series that each spike once")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    loop = _load_loopback()
    work = Path(tempfile.mkdtemp(prefix="finsent-bench-alerts-"))
    base = Settings(
        kafka_port=free_port(), kafka_controller_port=free_port(), partitions=1, metrics_port=0
    )
    broker = LocalKafka(base, home=work / "kafka")
    broker.start()
    stages = Supervisor(os.environ, work)
    try:
        with loop.WebhookServer() as slack, loop.SmtpServer(mode="none") as smtp:
            rules = work / "rules.yaml"
            rules.write_text(
                "grouping: {group_wait: 0s, group_interval: 0s}\n"
                "channels:\n  ops: {type: slack}\n"
                f"  risk: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none,"
                " sender: b@test, to: [r@test]}\n"
                "routes: [{match: '*', channels: [ops, risk]}]\n"
            )
            settings = base.model_copy(
                update={
                    "topic_prefix": f"bench{uuid.uuid4().hex[:6]}.",
                    "store_url": f"sqlite:///{work / 'store.db'}",
                    "windows": ("15m",),
                    "alert_keys": ("*",),
                    "alert_rules_file": rules,
                    "batch_max_wait_ms": 50,
                }
            )
            ensure_topics(settings)
            stages.env.update(
                {**settings.child_env(), "FINSENT_SLACK_WEBHOOK_URL": slack.url("/hook")}
            )
            for stage in ("alerter", "notifier"):
                stages.start(stage, finsent_command(stage))
            producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0
            )
            topic = settings.topic("sentiment.windows")
            keys = [f"ticker:B{i:03d}" for i in range(args.series)]
            # Warm-up: every series' quiet history, then one spike to see the path is up.
            for i in range(6):
                for key in keys:
                    producer.send(topic, key=key.encode(), value=encode(window(key, i, 0.1)))
            producer.flush()
            warm = "ticker:WARM"
            for i in range(6):
                producer.send(topic, key=warm.encode(), value=encode(window(warm, i, 0.1)))
            producer.send(topic, key=warm.encode(), value=encode(window(warm, 6, 0.9)))
            producer.flush()
            deadline = time.monotonic() + 90
            while not slack.accepted:
                if time.monotonic() > deadline:
                    raise SystemExit("the notifier delivered nothing in 90 s:\n" + stages.tails())
                time.sleep(0.05)
            n_slack, n_mail = len(slack.accepted), len(smtp.messages)

            closed: dict[str, float] = {}
            seen_slack: dict[str, float] = {}
            seen_mail: dict[str, float] = {}
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    now = time.time()
                    for post in slack.accepted[n_slack:]:
                        text = json.dumps(post.json())
                        for key in keys:
                            if key in text and key not in seen_slack:
                                seen_slack[key] = now
                    for mail in smtp.messages[n_mail:]:
                        for key in keys:
                            if key in str(mail.message["subject"]) and key not in seen_mail:
                                seen_mail[key] = now
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            for key in keys:  # one spike per series, a little apart, like real closes
                closed[key] = time.time()
                producer.send(topic, key=key.encode(), value=encode(window(key, 6, 0.9)))
                producer.flush()
                time.sleep(0.1)
            deadline = time.monotonic() + 60
            while (len(seen_slack) < len(keys) or len(seen_mail) < len(keys)) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            stop.set()
            producer.close()

            # Reference: the bare hand-off, one POST to the same webhook.
            bare = []
            with httpx.Client() as client:
                for _ in range(20):
                    t0 = time.perf_counter()
                    client.post(slack.url("/ref"), json={"text": "reference"})
                    bare.append(time.perf_counter() - t0)

        slack_lat = [seen_slack[k] - closed[k] for k in keys if k in seen_slack]
        mail_lat = [seen_mail[k] - closed[k] for k in keys if k in seen_mail]
        print(f"series: {len(keys)}; delivered to Slack {len(slack_lat)}, email {len(mail_lat)}")
        for name, lat in (("Slack", slack_lat), ("email", mail_lat)):
            if lat:
                print(
                    f"window close → {name:5} hand-off: p50 {pct(lat, 0.5) * 1e3:6.0f} ms, "
                    f"p95 {pct(lat, 0.95) * 1e3:6.0f} ms, max {max(lat) * 1e3:6.0f} ms"
                )
        ref = statistics.median(bare)
        print(f"reference: one bare webhook POST, median {ref * 1e3:.1f} ms")
        if slack_lat:
            print(f"ratio p95 Slack / bare POST: {pct(slack_lat, 0.95) / ref:,.0f}x")
        print("target: p95 under 2 s")
    finally:
        stages.stop_all(timeout_s=30)
        broker.stop()


if __name__ == "__main__":
    main()
