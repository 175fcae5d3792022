"""The soak test's machinery (finsent/app/soak.py, run by bench/soak.py): the verdicts on
samples, and the whole run, small, on the session broker: every stage a process, the feed on
the live ingest path, samples taken, the counts reconciled exactly, a mismatch found, and the
plot drawn."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from finsent.app.kafka_local import LocalKafka
from finsent.app.soak import (
    BROKER,
    FEED,
    STAGES,
    FeedPlan,
    FeedReport,
    Reconciliation,
    Sample,
    SoakRequest,
    StageLag,
    feed_backlog,
    format_summary,
    judge,
    lag_verdicts,
    memory_verdicts,
    read_samples,
    reconcile,
    rss_mb,
    run_soak,
    soak_settings,
    write_samples,
)
from finsent.core.settings import Settings
from finsent.ingest.generated_feed import FeedShape
from finsent.runtime.store import Store

ROOT = Path(__file__).resolve().parents[2]
STAGE_NAMES = [spec.name for spec in STAGES]


def bench_module(name: str) -> ModuleType:
    """A bench/ script as a module (bench/ is no package; its scripts import ``_machine``)."""
    for module in ("_machine", name):
        if module in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module, ROOT / "bench" / f"{module}.py")
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[name]


def sample(t: float, rss: float, lag_s: float = 0.0, phase: str = "feed") -> Sample:
    memory: dict[str, float | None] = {name: rss for name in [*STAGE_NAMES, FEED]}
    memory[BROKER] = 2 * rss
    lag = {name: StageLag(int(lag_s * 10), lag_s) for name in STAGE_NAMES}
    return Sample(t, phase, memory, lag, 0.0)


def test_rss_is_read_from_proc_and_none_once_a_process_is_gone() -> None:
    mine = rss_mb(os.getpid())
    assert mine is not None and mine > 10  # this interpreter, pytest and finsent
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert rss_mb(gone.pid) is None


def test_rss_growth_is_judged_from_the_warmup_mark_to_the_end_of_the_feed() -> None:
    # 100 MiB until the mark (60 s), then 12 MiB a minute: the medians are 100 MiB around the
    # mark and 109 MiB over the last 30 s to 120 s.
    samples = [sample(t, 100 + max(t - 60, 0) / 5) for t in range(0, 181, 5)]
    samples.append(sample(185, 500, phase="drain"))  # after the feed: never judged
    request = SoakRequest(out_dir=Path("."), minutes=2, warmup_minutes=1)
    at_120 = memory_verdicts([s for s in samples if s.t_s <= 120], 60, 120)
    assert {m.process for m in at_120} == {*STAGE_NAMES, FEED, BROKER}
    scorer = next(m for m in at_120 if m.process == "scorer")
    assert scorer.at_warmup_mb == 100  # the median of 45..75 s
    assert scorer.at_end_mb == 109  # of 90..120 s
    assert judge(request, at_120, lag_verdicts(samples, 30), _exact()) == [
        f"RSS of {name} grew 9.0% after the warm-up (100 -> 109 MiB; limit 5%)"
        for name in [*STAGE_NAMES, FEED]
    ]  # the broker's JVM, at twice the RSS and as much growth, is reported, not judged
    broker = next(m for m in at_120 if m.process == BROKER)
    assert not broker.judged and broker.growth == pytest.approx(0.09)
    flat = [sample(t, 100 + (t > 60) * 2) for t in range(0, 181, 5)]
    assert judge(request, memory_verdicts(flat, 60, 180), lag_verdicts(flat, 30), _exact()) == []


def test_lag_is_judged_after_the_grace_at_every_sample() -> None:
    samples = [sample(0, 100, lag_s=25.0), sample(40, 100, lag_s=3.0)]
    samples += [sample(45, 100, lag_s=12.5), sample(50, 100, lag_s=1.0, phase="drain")]
    verdicts = lag_verdicts(samples, grace_s=30)
    assert [(v.stage, v.max_s, v.max_records, v.at_t_s) for v in verdicts] == [
        (name, 12.5, 125, 45) for name in STAGE_NAMES
    ]
    request = SoakRequest(out_dir=Path("."), minutes=1, warmup_minutes=0)
    failures = judge(request, [], verdicts, _exact())
    assert failures == [f"lag of {n} reached 12.5 s at 45 s (limit 10 s)" for n in STAGE_NAMES]
    assert judge(request, [], lag_verdicts(samples[:1], 30), _exact()) == [
        f"lag of {n}: no samples after the start-up grace" for n in STAGE_NAMES
    ]
    # The feed must hold its rate: a backlog as long as the lag limit fails the run.
    behind = [
        replace(s, feed_behind_s=b) for s, b in zip(samples, (30.0, 0.5, 10.0, 0.0), strict=True)
    ]
    assert feed_backlog(behind, grace_s=30) == 10.0
    assert judge(request, [], [], _exact(), feed_backlog(behind, 30)) == [
        "the feed fell 10.0 s behind its schedule: 100/s not held"
    ]
    assert judge(request, [], [], _exact(), feed_backlog(behind[:2], 30)) == []


def test_samples_and_plans_survive_their_files(tmp_path: Path) -> None:
    samples = [sample(0.0, 90.5, 0.25), replace(sample(5.0, 91.0), feed_behind_s=None)]
    samples[1].rss_mb[FEED] = None  # not started yet
    path = write_samples(samples, tmp_path / "samples.csv")
    assert read_samples(path) == samples
    plan = FeedPlan(
        stories=10,
        rate=2.0,
        tick_s=0.5,
        shape=FeedShape(tickers=5, seed=3),
        status_path=tmp_path / "status.json",
        result_path=tmp_path / "result.json",
    )
    assert FeedPlan.read(plan.write(tmp_path / "plan.json")) == plan


def test_a_request_needs_a_warmup_shorter_than_the_run() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        SoakRequest(out_dir=Path("."), minutes=3, warmup_minutes=5)
    with pytest.raises(ValueError, match="positive"):
        SoakRequest(out_dir=Path("."), rate=0)  # the defaults otherwise
    assert SoakRequest(out_dir=Path("."), minutes=0.5, warmup_minutes=0, rate=10).stories == 300


def _exact() -> Reconciliation:
    return Reconciliation(0, 0, 0, 0, 0, 0, 0, {}, 0, 0, {}, {}, [], [])


@pytest.mark.slow
def test_a_small_soak_reconciles_exactly_and_draws_its_plot(
    kafka_broker: LocalKafka, pipeline_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "soak"
    request = SoakRequest(
        out_dir=out,
        minutes=0.5,
        rate=10,
        warmup_minutes=0.25,
        shape=FeedShape(tickers=20, outlets=3, exact_share=0.05, jitter_s=5),
        sample_every_s=1.0,
        startup_grace_s=5,
        keep_work=True,  # for the mismatch below
    )
    said: list[str] = []
    result = run_soak(
        pipeline_settings,
        request,
        threading.Event(),
        broker_pid=kafka_broker.status().pid,
        say=said.append,
    )
    rec = result.reconciliation
    assert rec.exact, format_summary(result)
    assert rec.emitted == 300 and rec.copies > 0 and rec.near > 0
    assert rec.dropped == rec.copies and rec.sent == rec.scored == 300 - rec.copies
    assert rec.counted == {"15m": rec.sent, "1h": rec.sent, "1d": rec.sent}
    assert rec.chained["near"] >= 0.9 * rec.near
    # overall, 20 tickers, 3 outlets and the topics the scorer gave
    assert rec.series_keys > 1 + 20 + 3
    assert said[0].startswith("every stage joined its group")

    assert len(result.samples) >= 25  # 30 s of feed, one a second, then the drain
    assert {s.phase for s in result.samples} == {"feed", "drain"}
    assert all(set(s.rss_mb) == {*STAGE_NAMES, FEED, BROKER} for s in result.samples[1:])
    assert all(v.max_s is not None for v in result.lag)  # every stage sampled
    assert result.feed_backlog_s is not None and result.feed_seconds >= 29
    assert all(m.growth is not None for m in result.memory if m.judged)
    assert result.samples_path.exists() and result.summary_path.exists()
    assert len(read_samples(result.samples_path)) == len(result.samples)
    assert "reconciliation: exact" in format_summary(result)
    assert (out / "logs" / "scorer.log").exists() and (out / "logs" / f"{FEED}.log").exists()

    # A count off by one is found, under the key and every window size.
    feed = FeedReport.read(out / "work" / "feed-result.json")
    expected = dict(feed.expected)
    expected["ticker:Z0003"] = expected.get("ticker:Z0003", 0) + 1
    tampered = replace(feed, expected=expected)
    run = soak_settings(pipeline_settings, "again", out / "work")
    store = Store(run.database_url)
    try:
        found = reconcile(store, run, tampered, {})
        dead = reconcile(store, run, feed, {"aggregator: late": 2})
    finally:
        store.close()
    assert [(m.key, m.window, m.counted - m.expected) for m in found.mismatches] == [
        ("ticker:Z0003", size, -1) for size in ("15m", "1h", "1d")
    ]
    assert not dead.exact and dead.problems == ["news.dlq holds 2 records: {'aggregator: late': 2}"]

    bench = bench_module("soak")
    marks = bench.marks_of(request, result.feed_end_s)
    html, png, note = bench.write_plot(result.samples, marks, request.lag_limit_s, out)
    assert html.stat().st_size > 100_000  # plotly.js inlined: it opens offline
    if bench.chromium() is not None:
        assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", note
    else:
        assert png is None and "only the HTML" in note
