"""Replay producer throughput into a real local Kafka broker.

Times `finsent ingest replay --speed max` end to end (read, normalize, dedup and novelty, encode,
send with acks=all and wait for every acknowledgement) on a generated feed, and, in the same run
and against the same broker, the reference: kafka-python sending the same number of
pre-encoded records with its default settings and nothing else. Prints medians and the ratio.

    .venv/bin/python bench/bench_ingest.py [--items 40000] [--repeats 3] [--archive]

`--archive` also replays the shared RSS 2023 H1 archive (../shared/datasets) once.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores
from kafka import KafkaProducer

from finsent.app.kafka_local import LocalKafka
from finsent.app.ports import free_port
from finsent.core.records import NewsItem, encode
from finsent.core.settings import Settings
from finsent.ingest.replay import replay
from finsent.ingest.sample_feed import write_jsonl
from finsent.runtime.kafka_io import ensure_topics

# The workspace's datasets beside the checkout (the product's default is the user data dir).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def feed_rows(n: int, seed: int = 0) -> list[dict]:
    """Distinct synthetic stories (our own words), one every 2 s of event time.

    Titles draw their words at random from a small vocabulary, so stories overlap about as
    much as real headlines do; near-identical templated titles are the near-duplicate
    index's worst case and are measured separately (see the README's known limits).
    """
    rng = random.Random(seed)
    words = [
        "shares",
        "profit",
        "outlook",
        "bank",
        "lender",
        "deposits",
        "rates",
        "inflation",
        "oil",
        "gas",
        "chip",
        "maker",
        "retailer",
        "sales",
        "guidance",
        "merger",
        "deal",
        "bid",
        "regulator",
        "probe",
        "lawsuit",
        "tariff",
        "export",
        "factory",
        "jobs",
        "wages",
        "yields",
        "bonds",
        "dollar",
        "euro",
        "gold",
        "copper",
        "airline",
        "travel",
        "demand",
        "supply",
        "margin",
        "forecast",
        "quarter",
        "record",
        "slump",
        "rally",
        "surge",
        "slide",
        "cut",
        "raise",
    ]
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    return [
        {
            "title": f"Company {i % 997} " + " ".join(rng.sample(words, 7)),
            "published_at": (t0 + timedelta(seconds=2 * i)).isoformat(),
            "source": f"wire-{i % 7}",
            "url": f"https://news.example/{i}",
            "body": f"Trading update number {i} for company {i % 997}.",
        }
        for i in range(n)
    ]


def reference(settings: Settings, n: int) -> float:
    """kafka-python with its defaults: the same count of pre-encoded records, then flush."""
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    values = [
        encode(NewsItem(id=f"r{i}", source="s", title=f"story {i}", published_at=t0, fetched_at=t0))
        for i in range(n)
    ]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    started = time.perf_counter()
    futures = [producer.send(settings.topic("news.raw"), value=v) for v in values]
    producer.flush()
    for future in futures:
        future.get(30)
    elapsed = time.perf_counter() - started
    producer.close()
    return n / elapsed


def run_replay(settings: Settings, path: Path) -> tuple[float, object]:
    # A fresh run prefix and dedup memory each time, so every repeat sends everything.
    run = settings.model_copy(
        update={
            "topic_prefix": f"bench-{uuid.uuid4().hex[:6]}.",
            "ingest_state_url": f"sqlite:///{path.parent / uuid.uuid4().hex}.db",
        }
    )
    ensure_topics(run, ["news.raw", "news.dlq"])
    started = time.perf_counter()
    stats = replay(run, path, threading.Event(), speed=None, progress=False)
    return stats.sent / (time.perf_counter() - started), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archive", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(
            kafka_port=free_port(), kafka_controller_port=free_port(), cache_dir=work / "cache"
        )
        broker = LocalKafka(settings, home=work / "broker")
        broker.start()
        try:
            ensure_topics(settings, ["news.raw"])
            feed = write_jsonl(feed_rows(args.items), work / "feed.jsonl")
            refs, rates = [], []
            for _ in range(args.repeats):
                refs.append(reference(settings, args.items))
                rate, stats = run_replay(settings, feed)
                rates.append(rate)
            ref, got = statistics.median(refs), statistics.median(rates)
            print(f"{args.items:,} stories, median of {args.repeats}")
            print(f"reference: kafka-python defaults, pre-encoded  {ref:10,.0f} records/s")
            print(f"finsent ingest replay --speed max (end to end) {got:10,.0f} items/s")
            send = stats.sent / stats.send_seconds
            # The replay normalizes and dedups as it sends: this phase holds all of it.
            print(f"  after the file is read and ordered (last run) {send:10,.0f} items/s")
            print(f"ratio end to end: {got / ref:.2f}×, after reading: {send / ref:.2f}×   {stats}")
            if args.archive:
                archive = SHARED_DATASETS / "rss_link_db_2023_business_h1" / "2023"
                rate, stats = run_replay(settings, archive)
                print(
                    f"RSS 2023 H1 archive: {rate:,.0f} items/s end to end, after reading "
                    f"{stats.sent / stats.send_seconds:,.0f} items/s; {stats}"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
