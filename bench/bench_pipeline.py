"""The pipeline around the model, side by side in one run (issue 21).

1. ``replay``: replay's load (read, normalize, tag) and dedup (exact and near-duplicate,
   novelty) in process, on the RSS 2023 H1 archive and on templated titles ("Stock CO123 rises
   3% after quarterly earnings beat": every title shares its words with the others, the near-
   duplicate index's worst case). Stories/s; targets 10,000/s (archive) and 5,000/s (templated).
2. ``aggregator``, ``growth``: the aggregator stage over routed keyed points, in process (the runner's loop
   minus Kafka, as ``bench_stream.py`` part 1 times it) and through Kafka (the real ``finsent
   aggregator`` process draining a ``news.keyed`` that holds them all: points/s from its first
   commit to its last). Targets 20,000 and 10,000 keyed points/s. ``growth``: its cost per
   point for 10k and 100k stories over 10, 1,000 and 100,000 tickers.
3. ``backtest``: the default scorer alone on the archive's kept headlines, in process (the
   reference), then ``finsent backtest`` of the archive end to end, with the CPU seconds of
   each of its processes read from /proc while it runs: per stage, and per 1,000 stories.
   Target: the backtest within 1.3x of scoring alone.

Prints the machine (CPU model and vector flags) first and ratios last.

    .venv/bin/python bench/bench_pipeline.py [--part replay|aggregator|growth|backtest|all] [--items N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_stream
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores
from bench_backtest import ARCHIVE, model_reference, run_backtest
from bench_stream import (
    batch_seconds,
    like_a_stage_process,
    local_broker,
    make_stories,
    run_aggregator,
)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from finsent.app.launch import finsent_command
from finsent.core.records import encode
from finsent.core.settings import Settings
from finsent.ingest.admit import Admission, IngestConfig
from finsent.ingest.replay import ReplayStats, load
from finsent.runtime.kafka_io import ensure_topics, group_id
from finsent.stream.router import route

TICK = os.sysconf("SC_CLK_TCK")
STAGE_NAMES = ("scorer", "router", "aggregator", "alerter", "notifier")


# -- 1. replay load and dedup ------------------------------------------------------------------


def templated_feed(path: Path, n: int) -> None:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            row = {
                "title": f"Stock CO{i % 5000} rises {i % 9}% after quarterly earnings beat",
                "published_at": (t0 + timedelta(seconds=2 * i)).isoformat(),
                "source": f"wire-{i % 7}",
                "url": f"https://news.example/{i}",
                "tickers": [f"CO{i % 5000}"],
            }
            out.write(json.dumps(row) + "\n")


def load_and_dedup(path: Path, work: Path) -> tuple[int, float, float]:
    """(stories read, load seconds, dedup seconds) over a fresh dedup memory."""
    settings = Settings(ingest_state_url=f"sqlite:///{work / f'{path.stem}-ingest.db'}")
    now = datetime.now(UTC)
    with like_a_stage_process():  # `finsent ingest replay` settles it before its replay
        started = time.perf_counter()
        items = load(path, path.stem, None, ReplayStats(), now)
        loaded = time.perf_counter()
        admission = Admission.open(IngestConfig.from_settings(settings), now)
        try:
            admission.decide(items, now)
        finally:
            admission.close()
        return len(items), loaded - started, time.perf_counter() - loaded


def bench_replay(work: Path, items: int) -> None:
    print("\n== replay: load (read, normalize, tag) and dedup, in process")
    templated = work / "templated.jsonl"
    templated_feed(templated, items)
    print(f"{'feed':28} {'stories':>8} {'load s':>7} {'dedup s':>8} {'stories/s':>10}  target")
    for label, path, target in (
        ("RSS 2023 H1 archive", ARCHIVE, 10_000),
        (f"templated titles ({items:,})", templated, 5_000),
    ):
        n, load_s, dedup_s = load_and_dedup(path, work)
        rate = n / (load_s + dedup_s)
        print(
            f"{label:28} {n:8,} {load_s:7.1f} {dedup_s:8.1f} {rate:10,.0f}  {target:,}/s "
            f"({rate / target:.2f}x of it)"
        )


# -- 2. the aggregator, in process and through Kafka -------------------------------------------


def bench_aggregator(work: Path, items: int) -> None:
    stories = make_stories(items)
    routed = route(stories)
    records = [encode(point) for _key, point in routed]
    settings = Settings(metrics_port=None)
    split, _facts = run_aggregator(settings, records, work / "agg-inproc.db")
    in_process = len(records) / batch_seconds(split.seconds)
    print(f"\n== aggregator: {items:,} stories → {len(records):,} keyed points, default windows")
    print(
        f"  in process     {in_process:10,.0f} points/s  (target 20,000: {in_process / 20_000:.2f}x)"
    )
    with local_broker(work) as base:
        if base is None:
            print("  through Kafka  not measured: no broker")
            return
        through = through_kafka(base, routed, records, work)
        print(
            f"  through Kafka  {through:10,.0f} points/s  (target 10,000: {through / 10_000:.2f}x)"
            f"; {through / in_process:.2f}x of in process"
        )


def through_kafka(base: Settings, routed: list, records: list[bytes], work: Path) -> float:
    """Keyed points/s of a real ``finsent aggregator`` draining ``news.keyed``, timed from its
    first commit to its last (process start-up and the first poll are left out)."""
    prefix = f"benchpipe{os.getpid()}"
    settings = base.model_copy(update={"topic_prefix": prefix})
    ensure_topics(settings)
    topic = settings.topic("news.keyed")
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, batch_size=256 * 1024
    )
    for (key, _point), value in zip(routed, records, strict=True):
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()
    env = {
        **os.environ,
        **settings.child_env(),
        "FINSENT_STORE_URL": f"sqlite:///{work / 'agg-kafka.db'}",
        "FINSENT_METRICS_PORT": "0",
    }
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    group = group_id(settings, "aggregator")
    process = subprocess.Popen(
        finsent_command("aggregator"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first: tuple[float, int] | None = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                offsets = admin.list_consumer_group_offsets(group)
            except KafkaError:  # the group's coordinator is not up before its first join
                offsets = {}
            done = sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if first is not None and done >= len(records):
                return (done - first[1]) / max(now - first[0], 1e-9)
            if process.poll() is not None:
                raise SystemExit(f"the aggregator exited: {process.stderr.read()[-2000:]!r}")
            time.sleep(0.1)
        raise SystemExit("the aggregator did not drain news.keyed in 600 s")
    finally:
        process.terminate()
        process.wait(30)
        admin.close()


def bench_growth(work: Path) -> None:
    """The aggregator's cost per keyed point against input size and the number of series
    keys (0-2 tickers a story from a pool of 10, 1,000 or 100,000)."""
    print("\n== aggregator cost against input: in process, default windows")
    print(
        f"{'stories':>8} {'ticker pool':>11} {'series':>8} {'points':>8} {'points/s':>9} {'us/point':>8}"
    )
    default_pool = bench_stream.TICKERS
    try:
        for stories_n in (10_000, 100_000):
            for pool in (10, 1_000, 100_000):
                bench_stream.TICKERS = [f"T{i:06d}" for i in range(pool)]
                routed = route(make_stories(stories_n))
                records = [encode(point) for _key, point in routed]
                series = len({key for key, _point in routed})
                split, _facts = run_aggregator(
                    Settings(metrics_port=None), records, work / f"growth-{stories_n}-{pool}.db"
                )
                seconds = batch_seconds(split.seconds)
                print(
                    f"{stories_n:8,} {pool:11,} {series:8,} {len(records):8,} "
                    f"{len(records) / seconds:9,.0f} {1e6 * seconds / len(records):8.1f}"
                )
    finally:
        bench_stream.TICKERS = default_pool


# -- 3. the archive backtest against scoring alone, CPU per process ----------------------------


class CpuSampler(threading.Thread):
    """The CPU seconds of every descendant of this process, read from /proc every 0.5 s; the
    last reading of each is kept, so one that exits keeps what it had used (within 0.5 s)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.cpu: dict[int, tuple[str, float]] = {}

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        names: dict[int, tuple[str, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            pid = int(entry)
            parents[pid] = int(stat[1])
            name = label(cmd) if any(cmd) else ""
            names[pid] = (name, (int(stat[11]) + int(stat[12])) / TICK)
        me = os.getpid()
        for pid, (name, seconds) in names.items():
            at, hops = pid, 0
            while at not in (0, 1, me) and hops < 10:
                at, hops = parents.get(at, 0), hops + 1
            if at == me and pid != me:
                # An exited process's cmdline reads empty until it is reaped: keep its name. A
                # child seen before its exec still has its parent's cmdline: take the new one.
                known = self.cpu.get(pid)
                self.cpu[pid] = (name or (known[0] if known else "other"), seconds)

    def by_name(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, seconds in self.cpu.values():
            totals[name] = totals.get(name, 0.0) + seconds
        return totals


def label(cmd: list[bytes]) -> str:
    text = b" ".join(cmd).decode(errors="replace")
    if "kafka.Kafka" in text:
        return "Kafka broker (JVM)"
    if "java" in text:
        return "Kafka storage format (JVM)"
    for stage in STAGE_NAMES:
        if f"finsent {stage}" in text or f"-m finsent {stage}" in text:
            return stage
    if "backtest" in text:
        return "backtest: replay (read, normalize, dedup, send) and drain"
    return f"other: {Path(cmd[0].decode(errors='replace')).name} {text[-60:]}"


def bench_backtest(work: Path) -> None:
    print("\n== backtest of the archive against scoring alone")
    reference_s, stories = model_reference(work)
    print(f"  scoring alone (in process)   {reference_s:7.1f} s  ({stories:,} stories)")
    sampler = CpuSampler()
    sampler.start()
    try:
        run_id = f"benchpipe-{datetime.now(UTC):%Y%m%d%H%M%S}"
        wall, _report = run_backtest(work, run_id, Settings().cache_dir)
    finally:
        sampler.done.set()
        sampler.join()
    print(f"  finsent backtest, end to end {wall:7.1f} s")
    print(f"  backtest / scoring alone     {wall / reference_s:7.2f}x   (target 1.30x)")
    totals = sampler.by_name()
    print(f"\n  CPU seconds per process over the backtest ({stories:,} stories):")
    print(f"  {'process':58} {'CPU s':>7} {'per 1,000':>9}")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:58} {seconds:7.1f} {1000 * seconds / stories:9.2f}")
    print(f"  {'all':58} {sum(totals.values()):7.1f} {1000 * sum(totals.values()) / stories:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("replay", "aggregator", "growth", "backtest", "all"), default="all"
    )
    parser.add_argument("--items", type=int, default=40_000, help="templated titles and stories")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="finsent-bench-pipeline-") as tmp:
        work = Path(tmp)
        if args.part in ("replay", "all"):
            bench_replay(work, args.items)
        if args.part in ("aggregator", "all"):
            bench_aggregator(work, args.items)
        if args.part in ("growth", "all"):
            bench_growth(work)
        if args.part in ("backtest", "all"):
            bench_backtest(work)


if __name__ == "__main__":
    main()
