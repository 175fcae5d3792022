"""Streaming stages against the issue's targets: aggregator throughput, scorer overhead, and
the latency from a scored story to the window it closes.

1. ``aggregator`` (in process, no Kafka): synthetic scored stories are fanned out with
   ``stream.router.route`` and pre-encoded as the aggregator receives them from ``news.keyed``;
   then the stage runs over them through the production loop minus Kafka
   (``finsent.runtime.testing.run_logic`` over ``runner.StageLoop``): the runner decodes each
   micro-batch of the stage's ``max_batch`` records, the aggregator's logic processes it, the
   runner encodes its outputs (what ``send_all`` does before the network) and commits them with
   the fenced offsets to a temporary SQLite store. Each of those parts is timed. Target: 20,000
   scored stories/s. The reference, timed in the same run over the same stories, is a pandas
   groupby over all the data at once (as in ``bench_windows.py``): no decoding, no state, no
   store, no incrementality.
2. ``scorer``: against a real local broker, the scorer stage as ``finsent scorer`` runs it
   (``finsent.runtime.runner.run_stage``: poll 64 ``NewsItem`` records from ``news.raw``,
   decode, score with the shipped attention model, encode, send, and commit once the
   acknowledgements are in, pipelined), in a thread, many batches. Target: the time outside the
   model under 10% of the batch. Without a broker, only the in-process share is reported.
3. ``latency``: the real ``finsent router`` and ``finsent aggregator`` processes on a real broker
   (10 s windows, no grace, final windows only); stories go to ``news.scored`` at a steady rate
   with event time = wall clock. A window closes with the first story at or past its end; its
   latency is the time from producing that story to the window's record on
   ``sentiment.windows``. Target: p95 under 1 s. Process start-up is excluded (a warm-up story
   goes through first).

Throughput figures are medians of --repeats runs; latency figures are percentiles over all the
windows of one run.

    .venv/bin/python bench/bench_stream.py [--part aggregator|scorer|latency|all] [--quick]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import math
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

import finsent.runtime.runner as runner
from finsent.app.kafka_local import LocalKafka
from finsent.app.launch import finsent_command
from finsent.app.ports import free_port
from finsent.app.stages import CONSUMING
from finsent.app.supervisor import Supervisor
from finsent.core.records import NewsItem, ScoredItem, WindowStat, decode, encode, stable_id
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.model.topics import TOPICS
from finsent.runtime.kafka_io import KafkaConfig, ensure_topics, make_producer
from finsent.runtime.process import settle_collector
from finsent.runtime.store import Store
from finsent.runtime.testing import run_logic
from finsent.stream.router import route
from finsent.stream.scoring import Scoring, score_batch
from finsent.stream.windows import WindowEngine, WindowSpec, series_keys

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TICKERS = [f"T{i:03d}" for i in range(200)]
SOURCES = [f"src{i}" for i in range(10)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, fine for few samples."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def scored_story(i: int, at: datetime, rng: random.Random) -> ScoredItem:
    """One synthetic scored story: 20 topics, 10 sources, 0–2 of 200 tickers, mixed sentiment."""
    score = rng.uniform(-1, 1)
    news = NewsItem(
        id=f"s{i}-{rng.getrandbits(32):08x}",
        source=rng.choice(SOURCES),
        title=f"story {i} about {rng.choice(TOPICS)}",
        url=f"https://news.test/{i}",
        published_at=at,
        fetched_at=at,
        tickers=tuple(rng.sample(TICKERS, rng.randint(0, 2))),
        novelty=rng.choice((100.0, 100.0, 100.0, 40.0)),
    )
    sentiment = "negative" if score < -0.3 else "positive" if score > 0.3 else "neutral"
    return ScoredItem(
        item=news,
        topic=rng.choice(TOPICS),
        sentiment=sentiment,
        score=round(score, 6),
        confidence=round(rng.uniform(0.5, 1), 6),
        top_tokens=("shares", "profit"),
        model_version="bench",
        scored_at=at,
    )


def make_stories(n: int, seed: int = 0) -> list[ScoredItem]:
    """Event times 3 s apart with up to 60 s of disorder: well inside the default grace, so
    nothing is late and every story is counted."""
    rng = random.Random(seed)
    return [
        scored_story(i, T0 + timedelta(seconds=i * 3 + rng.randint(0, 60)), rng) for i in range(n)
    ]


# -- 1. aggregator throughput, in process -------------------------------------------------


class Split:
    """Seconds accumulated per part of the batch."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def timed(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return wrapper


@contextlib.contextmanager
def like_a_stage_process() -> Iterator[None]:
    """The garbage collector set as a stage process sets it before its loop
    (``settle_collector``), and put back afterwards for the rest of the benchmark."""
    threshold = gc.get_threshold()
    settle_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def run_aggregator(
    settings: Settings, payloads: list[bytes], db: Path, size: int = 0
) -> tuple[Split, dict]:
    """The aggregator stage over ``payloads`` (news.keyed, encoded, partition 0) through the
    production loop minus Kafka, its parts timed."""
    store = Store(f"sqlite:///{db}")
    logic: Any = CONSUMING["aggregator"](settings, store)  # as `finsent aggregator` makes it
    size = size or stage("aggregator").max_batch(settings)
    split = Split()
    # Decoding and encoding are the runner's, the state diff the engine's: wrap them where
    # the loop looks them up, for this run only.
    timed = [
        mock.patch.object(runner, "decode_or_dead", split.timed("decode", runner.decode_or_dead)),
        mock.patch.object(runner, "encode", split.timed("encode", runner.encode)),
        mock.patch.object(
            WindowEngine, "take_changes", split.timed("state", WindowEngine.take_changes)
        ),
        mock.patch.object(logic, "process", split.timed("process", logic.process)),
        mock.patch.object(store, "commit", split.timed("commit", store.commit)),
    ]
    try:
        with contextlib.ExitStack() as patches:
            for patch in timed:
                patches.enter_context(patch)
            patches.enter_context(like_a_stage_process())
            started = time.perf_counter()
            run = run_logic(logic, payloads, store, stage="aggregator", batch_size=size)
            split.add("wall", time.perf_counter() - started)
    finally:
        store.close()
    facts = {
        "finals": sum(1 for _, w in run.outputs if w.version == 1),
        "updates": sum(1 for _, w in run.outputs if w.version == 0),
        "open": sum(
            1
            for engine in logic.engines.values()
            for slot in engine.slots.values()
            if slot.version == 0
        ),
        "dead": len(run.dead),
    }
    return split, facts


def batch_seconds(seconds: dict[str, float]) -> float:
    """A run's batch time: what the stage itself spends on its batches."""
    return sum(seconds.get(part, 0.0) for part in ("decode", "process", "encode", "commit"))


def pandas_reference(stories: list[ScoredItem], specs: tuple[WindowSpec, ...]) -> int:
    """Per (key, window): count, mean score, negative share, for all stories at once."""
    rows = [
        (key, s.item.published_at, s.score, s.sentiment == "negative")
        for s in stories
        for key in series_keys(s)
    ]
    frame = pd.DataFrame(rows, columns=["key", "ts", "score", "neg"])
    groups = 0
    for spec in specs:
        assert spec.hop == spec.size, "the reference does tumbling windows only"
        frame["start"] = frame["ts"].dt.floor(pd.Timedelta(spec.size))
        out = frame.groupby(["key", "start"]).agg(
            count=("score", "size"), mean=("score", "mean"), neg=("neg", "mean")
        )
        groups += len(out)
    return groups


def bench_aggregator(args: argparse.Namespace, workdir: Path) -> None:
    stories = make_stories(args.items)
    records = [encode(point) for _key, point in route(stories)]
    points = len(records)
    size = args.batch_records or stage("aggregator").max_batch(Settings())
    print(
        f"\n== aggregator, in process (the runner's loop, no Kafka): {len(stories):,} stories → "
        f"{points:,} keyed points, batches of {size} records, SQLite store, "
        f"median of {args.repeats}"
    )
    configs = [
        (("15m", "1h", "1d"), "updates"),
        (("15m", "1h", "1d"), "final"),
        (("15m",), "updates"),
        (("15m",), "final"),
    ]
    print(
        f"{'windows':12} {'emit':8} {'stories/s':>10} {'points/s':>10} {'ref stories/s':>13} "
        f"{'ratio':>6}  split of batch time: decode / windows / state / encode / commit; "
        "loop"
    )
    # Warm-up, untimed: pydantic adapters, SQLAlchemy statement caches, pandas' first groupby.
    run_aggregator(Settings(metrics_port=None), records[:2048], workdir / "agg-warm.db")
    pandas_reference(stories[:500], Settings().window_specs)
    run = 0
    for windows, emit in configs:
        settings = Settings(windows=windows, window_emit=emit, metrics_port=None)
        totals, refs, splits = [], [], []
        facts: dict = {}
        for _ in range(args.repeats):
            run += 1
            split, facts = run_aggregator(settings, records, workdir / f"agg-{run}.db", size)
            totals.append(batch_seconds(split.seconds))
            splits.append(split.seconds)
            started = time.perf_counter()
            groups = pandas_reference(stories, settings.window_specs)
            refs.append(time.perf_counter() - started)
        total = statistics.median(totals)
        ref = statistics.median(refs)

        def share(name: str, _splits: list = splits) -> float:
            return statistics.median(x.get(name, 0.0) / batch_seconds(x) for x in _splits)

        windows_share = share("process") - share("state")
        # The rest of the run: the loop's own polls, offsets and checkpoint bookkeeping
        # (against the test kit's in-memory source: not in the rate).
        loop_share = statistics.median(
            (x["wall"] - batch_seconds(x)) / batch_seconds(x) for x in splits
        )
        rate = len(stories) / total
        ref_rate = len(stories) / ref
        print(
            f"{','.join(windows):12} {emit:8} {rate:10,.0f} {points / total:10,.0f} "
            f"{ref_rate:13,.0f} {rate / ref_rate:6.2f}  "
            f"{share('decode'):.0%} / {windows_share:.0%} / {share('state'):.0%} / "
            f"{share('encode'):.0%} / {share('commit'):.0%}; +{loop_share:.0%}"
        )
        # Every story must have been counted: the engine's windows are the reference's groups.
        made = facts["finals"] + facts["open"]
        if made != groups or facts["dead"]:
            print(
                f"  CHECK FAILED: {made} windows (final {facts['finals']} + open "
                f"{facts['open']}) vs {groups} reference groups, {facts['dead']} dead letters"
            )
        elif emit == "updates":
            print(
                f"  ({facts['updates']} running updates emitted: every "
                f"{settings.window_update_seconds:g} s of wall clock, so a short run sees few)"
            )
    print(
        "target: 20,000 stories/s per process. decode = KeyedPoint JSON → record (the "
        "runner); windows = the logic's WindowEngine.add/close; state = take_changes (open-"
        "window state rows); encode = the emitted windows to JSON (the runner's send); commit = "
        "the fenced SQLite transaction; loop = the runner's polls and bookkeeping around them, "
        "outside the batch time"
    )


# -- the local broker ---------------------------------------------------------------------


@contextlib.contextmanager
def local_broker(workdir: Path) -> Iterator[Settings | None]:
    """A real single-node Kafka on free ports (jars from the default cache), or None."""
    base = Settings(
        kafka_port=free_port(), kafka_controller_port=free_port(), partitions=1, metrics_port=None
    )
    broker = LocalKafka(base, home=workdir / "kafka")
    started = time.perf_counter()
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - any failure: report it and run what we can
        print(f"\n!! the local Kafka broker could not start: {exc}")
        with contextlib.suppress(Exception):
            broker.stop()
        yield None
        return
    print(
        f"\n(local Kafka broker at {broker.bootstrap}, up in {time.perf_counter() - started:.0f} s)"
    )
    try:
        yield base
    finally:
        broker.stop()


# -- 2. scorer overhead -------------------------------------------------------------------


def news_items(n: int) -> list[NewsItem]:
    """Generated headlines (our own sample feed), cycled to n distinct stories."""
    from finsent.ingest.sample_feed import generate

    now = datetime.now(UTC)
    rows = generate(end=now, hours=72)
    items = []
    for i in range(n):
        row = rows[i % len(rows)]
        at = datetime.fromisoformat(row["published_at"])
        url = f"{row['url']}?n={i}"
        items.append(
            NewsItem(
                id=stable_id(url, row["title"], row["source"]),
                source=row["source"],
                title=row["title"],
                url=url,
                published_at=at,
                fetched_at=now,
                tickers=tuple(row["tickers"]),
            )
        )
    return items


def timed_predictor(scorer: Any, split: Split) -> None:
    """Time the network's forward passes inside ``scorer.score`` too, where there is one."""
    predictor = getattr(scorer, "predictor", None)
    if predictor is not None:
        predictor.predict = split.timed("inference", predictor.predict)


def bench_scorer(args: argparse.Namespace, base: Settings | None) -> None:
    from finsent.model.scorer import ScorerConfig, load_scorer

    # The default cache keeps the int8 ONNX export between runs (keyed by model version).
    settings = (base or Settings(metrics_port=None)).model_copy(
        update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}.", "scorer": "attention"}
    )
    started = time.perf_counter()
    scorer = load_scorer("attention", ScorerConfig.from_settings(settings))
    load_s = time.perf_counter() - started
    size = settings.batch_max_size
    per_run = args.scorer_batches
    items = news_items(size * (per_run * args.repeats + 2))
    scorer.score(items[:size])  # warm-up: ONNX Runtime kernels, tokenizer caches
    print(
        f"\n== scorer overhead: {scorer.version}, batches of {size}, {per_run} batches per run, "
        f"median of {args.repeats} (model loaded in {load_s:.1f} s)"
    )
    if base is None:
        scorer_in_process(args, scorer, items, size)
        return
    ensure_topics(settings, ["news.raw", "news.scored", "news.dlq"])
    producer = make_producer(KafkaConfig.from_settings(settings))
    raw = settings.topic("news.raw")
    for item in items:
        producer.send(raw, key=item.id.encode(), value=encode(item))
    producer.flush()
    producer.close()

    # The real stage (the runner's loop around stream/scoring.py, pipelined sends), in a thread,
    # read through its own Prometheus metrics: finsent_batch_seconds against
    # finsent_model_seconds. Its logic gets the scorer loaded above, so both use one model.
    from finsent.runtime import metrics

    def value(metric: Any, suffix: str) -> float:
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith(suffix) and sample.labels.get("stage") == "scorer":
                    return sample.value
        return 0.0

    per_run_items = size * per_run

    def model_alone() -> float:
        """Reference in the same run: the model alone on the same batch size (stories/s)."""
        t0 = time.perf_counter()
        for i in range(0, per_run_items, size):
            scorer.score(items[i : i + size])
        return per_run_items / (time.perf_counter() - t0)

    reference_before = model_alone()  # before and after the stage run: the machine is noisy
    stop = threading.Event()
    stage_thread = threading.Thread(
        target=runner.run_stage,
        args=(settings, stage("scorer"), lambda _settings, _store: Scoring(scorer), stop),
        daemon=True,
    )
    stage_thread.start()
    wanted = len(items)
    # The first batches pay for the group join and warm-up: measured from the 2nd batch on.
    deadline = time.monotonic() + 120
    while value(metrics.OUTPUTS, "_total") < size * 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the scorer scored nothing in 120 s")
        time.sleep(0.01)
    runs = []
    for _ in range(args.repeats):
        b0, m0 = value(metrics.BATCH_SECONDS, "_sum"), value(metrics.MODEL_SECONDS, "_sum")
        n0, t0 = value(metrics.OUTPUTS, "_total"), time.perf_counter()
        target = min(n0 + per_run_items, wanted)
        while value(metrics.OUTPUTS, "_total") < target:
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        batch = value(metrics.BATCH_SECONDS, "_sum") - b0
        model = value(metrics.MODEL_SECONDS, "_sum") - m0
        done = value(metrics.OUTPUTS, "_total") - n0
        runs.append({"batch": batch, "model": model, "wall": wall, "n": done})
    stop.set()
    stage_thread.join(60)
    model_only = statistics.median([model_alone(), reference_before])

    def med(fn: Callable[[dict], float]) -> float:
        return statistics.median(fn(r) for r in runs)

    overhead = med(lambda r: (r["batch"] - r["model"]) / r["batch"])
    print(
        "real stage loop (run_stage, pipelined): median ms per batch "
        f"{med(lambda r: r['batch'] / (r['n'] / size)) * 1e3:.1f}, of which model "
        f"{med(lambda r: r['model'] / (r['n'] / size)) * 1e3:.1f}"
    )
    print(f"overhead share (batch − model)/batch (finsent_batch_seconds): {overhead:6.1%}")
    stage_rate = med(lambda r: r["n"] / r["wall"])
    print(
        f"throughput: stage {stage_rate:,.0f} stories/s, model alone {model_only:,.0f} stories/s "
        "(median of before and after), "
        f"ratio {stage_rate / model_only:.2f}"
    )
    print("target: overhead under 10% of batch time")


def scorer_in_process(
    args: argparse.Namespace, scorer: Any, items: list[NewsItem], size: int
) -> None:
    """Without a broker: decode + encode against the model, on the same batches."""
    payloads = [encode(item) for item in items]
    shares = []
    for run in range(args.repeats):
        per_batch = []
        for b in range(args.scorer_batches):
            i = (run * args.scorer_batches + b) * size
            t0 = time.perf_counter()
            news = [decode(NewsItem, p) for p in payloads[i : i + size]]
            t1 = time.perf_counter()
            scored, _failed = score_batch(scorer, news)
            t2 = time.perf_counter()
            _out = [encode(s) for s in scored]
            t3 = time.perf_counter()
            per_batch.append(((t1 - t0) + (t3 - t2)) / (t3 - t0))
        shares.append(statistics.median(per_batch))
    print("no broker: Kafka poll, send and commit are not measured")
    print(
        f"in-process share (decode + encode)/(decode + model + encode): {statistics.median(shares):6.1%}"
    )


# -- 3. scored → window emitted latency ---------------------------------------------------


class WindowReader(threading.Thread):
    """Reads sentiment.windows from the start, noting when each record arrived."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self.consumer.assign([TopicPartition(settings.topic("sentiment.windows"), 0)])
        self.stop = threading.Event()
        self.seen: list[tuple[float, float, bytes]] = []  # (arrived, Kafka timestamp, value)

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                arrived = time.time()
                self.seen.extend((arrived, r.timestamp / 1000, r.value) for r in records)
        self.consumer.close()

    def windows(self) -> list[tuple[float, float, WindowStat]]:
        return [(a, ts, decode(WindowStat, v)) for a, ts, v in list(self.seen)]


def bench_latency(args: argparse.Namespace, base: Settings | None, workdir: Path) -> None:
    print(
        f"\n== scored → window emitted: finsent router + aggregator processes, 10s windows, "
        f"grace 0, final only, {args.rate:g} stories/s for {args.latency_seconds:g} s"
    )
    if base is None:
        print("skipped: no broker")
        return
    run_dir = workdir / f"latency-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    settings = base.model_copy(
        update={
            "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
            "store_url": f"sqlite:///{run_dir / 'store.db'}",
            "cache_dir": run_dir / "cache",
            "windows": ("10s",),
            "grace_seconds": 0,
            "allowed_lateness_seconds": 0,
            "window_emit": "final",
            "partitions": 1,
            "metrics_port": 0,  # any free port: never clash with a running pipeline
        }
    )
    ensure_topics(settings)
    store = Store(settings.database_url)  # the schema exists before the stages race for it
    reader = WindowReader(settings)
    reader.start()
    producer = make_producer(KafkaConfig.from_settings(settings))
    scored_topic = settings.topic("news.scored")
    keyed = (settings.topic("news.keyed"), 0)
    rng = random.Random(1)
    sent: list[float] = []  # wall time each story was produced; its event time is the same
    points = 0  # keyed points the router should make of them
    consumed = 0  # of those, how many the aggregator stored offsets for

    def produce(i: int) -> int:
        now = time.time()
        story = scored_story(i, datetime.fromtimestamp(now, UTC), rng)
        producer.send(scored_topic, key=story.item.id.encode(), value=encode(story))
        sent.append(now)
        return len(series_keys(story))

    stages = Supervisor({**os.environ, **settings.child_env(), "PYTHONUNBUFFERED": "1"}, run_dir)
    for name in ("router", "aggregator"):
        stages.start(name, finsent_command(name))
    try:
        # Start-up must not count: wait until a warm-up story has been aggregated.
        started = time.monotonic()
        points = produce(0)
        producer.flush()
        while store.load_offsets("aggregator").get(keyed, 0) < points:
            if time.monotonic() - started > 120 or stages.dead():
                print("!! the stages did not take the warm-up story:\n" + stages.tails())
                return
            time.sleep(0.1)
        print(f"(stages up and through the warm-up story in {time.monotonic() - started:.1f} s)")
        begin = time.monotonic()
        total = int(args.rate * args.latency_seconds)
        for i in range(1, total + 1):
            delay = begin + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            points += produce(i)
        producer.flush()
        # Every window that ended before the last story's event time must come out.
        size = 10.0
        expected = math.floor(sent[-1] / size) - math.floor(sent[0] / size)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = sum(1 for *_, w in reader.windows() if w.key == "overall" and w.version == 1)
            if got >= expected:
                break
            time.sleep(0.2)
        consumed = store.load_offsets("aggregator").get(keyed, 0)
    finally:
        for name, code in stages.stop_all(timeout_s=30).items():  # they finish their batch
            if code:
                print(f"!! finsent {name} exited with code {code}")
        reader.stop.set()
        reader.join(10)
        producer.close()
        store.close()

    by_ts: dict[str, list[float]] = {"overall": [], "all": []}
    by_arrival: dict[str, list[float]] = {"overall": [], "all": []}
    for arrived, stamp, w in reader.windows():
        if w.version != 1:
            continue
        trigger = bisect.bisect_left(sent, w.window_end.timestamp())
        if trigger == len(sent):
            continue
        for group in ("overall", "all") if w.key == "overall" else ("all",):
            by_ts[group].append(stamp - sent[trigger])
            by_arrival[group].append(arrived - sent[trigger])
    n_overall = len(by_ts["overall"])
    print(
        f"closed windows: {n_overall} of {expected} expected for key overall, {len(by_ts['all'])} over all keys"
    )
    if not n_overall:
        print(
            f"!! no window came out; the aggregator stored offsets for {consumed} of {points} "
            "keyed points:\n" + stages.tails()
        )
        return
    print(f"{'latency ms':34} {'p50':>7} {'p95':>7} {'max':>7}")
    for label, data in (
        ("overall, to the record's timestamp", by_ts["overall"]),
        ("overall, to our consumer's receipt", by_arrival["overall"]),
        ("all keys, to the record's timestamp", by_ts["all"]),
        ("all keys, to our consumer's receipt", by_arrival["all"]),
    ):
        print(
            f"{label:34} {percentile(data, 50) * 1e3:7.0f} {percentile(data, 95) * 1e3:7.0f} "
            f"{max(data) * 1e3:7.0f}"
        )
    print(
        "target: p95 under 1 s. From producing the first story past a window's end to the "
        "window on sentiment.windows (its CreateTime is the aggregator's send)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("aggregator", "scorer", "latency", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=20_000, help="stories for the aggregator")
    parser.add_argument(
        "--batch-records", type=int, default=0, help="aggregator batch (default: the stage's)"
    )
    parser.add_argument("--scorer-batches", type=int, default=30, help="timed batches per run")
    parser.add_argument("--rate", type=float, default=50.0, help="stories/s in the latency run")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.quick:
        args.repeats, args.items, args.scorer_batches, args.latency_seconds = 1, 5_000, 8, 20.0
    parts = ("aggregator", "scorer", "latency") if args.part == "all" else (args.part,)
    # Shared machines are noisy: say how busy this one was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"parts: {', '.join(parts)}; {os.cpu_count()} CPUs, load average {load}")
    with tempfile.TemporaryDirectory(prefix="finsent-bench-") as tmp:
        workdir = Path(tmp)
        if "aggregator" in parts:
            bench_aggregator(args, workdir)
        if "scorer" in parts or "latency" in parts:
            with local_broker(workdir) as base:
                if "scorer" in parts:
                    bench_scorer(args, base)
                if "latency" in parts:
                    bench_latency(args, base, workdir)


if __name__ == "__main__":
    main()
