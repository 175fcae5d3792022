"""Window aggregation throughput: the pure ``WindowEngine`` core against a pandas reference.

Both compute the same per-key 15-minute counts, mean scores and negative shares over the same
synthetic scored stories; the reference is a vectorised batch groupby, which sees all data at
once, so the ratio says what incremental, event-at-a-time windowing costs. Prints medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.core.records import NewsItem, ScoredItem
from finsent.model.topics import TOPICS
from finsent.stream.windows import WindowEngine, WindowSpec

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TICKERS = [f"T{i:03d}" for i in range(200)]


def make_items(n: int, seed: int = 0) -> list[ScoredItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        at = T0 + timedelta(seconds=i * 3 + rng.randint(0, 60))
        score = rng.uniform(-1, 1)
        news = NewsItem(
            id=f"s{i}",
            source=f"src{rng.randint(0, 9)}",
            title=f"story {i}",
            published_at=at,
            fetched_at=at,
            tickers=tuple(rng.sample(TICKERS, rng.randint(0, 2))),
        )
        sentiment = "negative" if score < -0.3 else "positive" if score > 0.3 else "neutral"
        items.append(
            ScoredItem(
                item=news,
                topic=rng.choice(TOPICS),
                sentiment=sentiment,
                score=score,
                confidence=rng.uniform(0.5, 1),
                model_version="bench",
                scored_at=at,
            )
        )
    return items


def run_core(items: list[ScoredItem]) -> int:
    engine = WindowEngine(specs=[WindowSpec.parse("15m")], grace=timedelta(minutes=2))
    now = datetime.now(UTC)
    closed = 0
    for item in items:
        closed += len(engine.add_item(item, now).emitted)
    return closed


def run_reference(items: list[ScoredItem]) -> int:
    rows = []
    for s in items:
        keys = ["overall", f"topic:{s.topic}", f"source:{s.item.source}"]
        keys += [f"ticker:{t}" for t in s.item.tickers]
        for key in keys:
            rows.append((key, s.item.published_at, s.score, s.sentiment == "negative"))
    frame = pd.DataFrame(rows, columns=["key", "ts", "score", "neg"])
    frame["start"] = frame["ts"].dt.floor("15min")
    out = frame.groupby(["key", "start"]).agg(
        count=("score", "size"), mean=("score", "mean"), neg=("neg", "mean")
    )
    return len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    items = make_items(args.items)
    timings: dict[str, list[float]] = {"core": [], "reference": []}
    for _ in range(args.repeats):
        for name, fn in (("core", run_core), ("reference", run_reference)):
            started = time.perf_counter()
            fn(items)
            timings[name].append(time.perf_counter() - started)
    core = args.items / statistics.median(timings["core"])
    reference = args.items / statistics.median(timings["reference"])
    print(f"items per run: {args.items:,}, runs: {args.repeats} (medians)")
    print(f"WindowEngine 15m (incremental, pure): {core:12,.0f} items/s")
    print(f"pandas groupby reference (batch):    {reference:12,.0f} items/s")
    print(f"ratio core/reference: {core / reference:.2f}")


if __name__ == "__main__":
    main()
