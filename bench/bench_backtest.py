"""`finsent backtest` end to end on the 2023 H1 RSS archive, against the issue's 3-minute target.

Each repeat runs the real command in a fresh process, on a broker that is not running yet:
Kafka start, replay (read, normalize, dedup), scoring with the default (attention, int8,
batch-invariant) model, routing, windows, the end-of-feed close, alerting and the report. The
reference, measured in the same run on the same stories: the scorer's model alone, in process,
scoring every kept headline the way the scoring stage does. It is the floor of any backtest of
this feed; the ratio says what the rest of the pipeline costs on top of it.

Every repeat also checks the real case: a negative alert on topic:Financials (or a bank
ticker) by the end of 2023-03-10 UTC, and that each repeat gives the same alert bytes.

    .venv/bin/python bench/bench_backtest.py [--repeats 3] [--skip-reference]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.app.launch import finsent_command
from finsent.app.ports import free_port
from finsent.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT.parent / "shared" / "datasets" / "rss_link_db_2023_business_h1"
EVENTS = ROOT / "finsent" / "app" / "events" / "rss-2023-h1.yaml"
TARGET_S = 180.0
SVB_DEADLINE = datetime(2023, 3, 11, tzinfo=UTC)  # the end of 2023-03-10 UTC
BANK_KEYS = ("topic:Financials", "ticker:SIVB", "ticker:SBNY", "ticker:FRC", "ticker:JPM")


def run_backtest(work: Path, run_id: str, cache: Path) -> tuple[float, Path]:
    """One `finsent backtest` on a broker it has to start itself; (wall seconds, report dir).

    The cache is the usual one (Kafka jars, the int8 model); the run's folder, its broker's
    data and its registry row are the bench's own and go when it ends."""
    port = free_port()
    env = {
        **os.environ,
        "FINSENT_KAFKA_PORT": str(port),
        "FINSENT_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FINSENT_BACKTEST_REGISTRY_URL": f"sqlite:///{work / 'registry.db'}",
    }
    report = work / run_id
    cmd = [
        *finsent_command("backtest"),
        "--feed", str(ARCHIVE), "--events", str(EVENTS),
        "--run-id", run_id, "--report", str(report), "--no-progress",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    shutil.rmtree(cache / "backtests" / run_id, ignore_errors=True)
    shutil.rmtree(cache / "kafka" / f"broker-{port}", ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"backtest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout.strip().splitlines()[0], flush=True)
    return seconds, report


def model_reference(work: Path) -> tuple[float, int]:
    """Seconds for the default scorer alone on the archive's kept stories, in process."""
    from finsent.ingest.admit import IngestConfig, admit, novelty_tracker
    from finsent.ingest.replay import ReplayStats, load
    from finsent.model.scorer import ScorerConfig, load_scorer

    settings = Settings(ingest_state_url=f"sqlite:///{work / 'ref-ingest.db'}")
    items = load(ARCHIVE, "archive", None, ReplayStats())
    tracker = novelty_tracker(IngestConfig.from_settings(settings))
    items, _ = admit(tracker, items, datetime.now(UTC))
    scorer = load_scorer("attention", ScorerConfig.from_settings(settings))
    scorer.score(items[:64])  # warm up
    started = time.perf_counter()
    for i in range(0, len(items), settings.batch_max_size):
        scorer.score(items[i : i + settings.batch_max_size])
    return time.perf_counter() - started, len(items)


def svb_alerts(report: Path) -> list[dict]:
    import csv

    with (report / "alerts.csv").open(encoding="utf-8") as fh:
        return [
            row
            for row in csv.DictReader(fh)
            if row["key"] in BANK_KEYS
            and datetime.fromisoformat(row["fired_at"]) < SVB_DEADLINE
            and datetime.fromisoformat(row["fired_at"]) >= datetime(2023, 3, 8, tzinfo=UTC)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if not ARCHIVE.is_dir():
        raise SystemExit(f"the archive is not at {ARCHIVE}")
    with tempfile.TemporaryDirectory(prefix="finsent-bench-backtest-") as tmp:
        work = Path(tmp)
        cache = Settings().cache_dir
        # The reference also builds the cached int8 model, so no repeat pays for that.
        reference_s, stories = model_reference(work) if not args.skip_reference else (0.0, 0)
        walls, alert_bytes = [], set()
        for n in range(args.repeats):
            run_id = f"bench-{datetime.now(UTC):%Y%m%d%H%M%S}-{n}"
            seconds, report = run_backtest(work, run_id, cache)
            walls.append(seconds)
            alert_bytes.add((report / "alert_events.jsonl").read_bytes())
            hits = svb_alerts(report)
            print(
                f"  repeat {n + 1}: {seconds:6.1f} s; SVB-era bank alerts by 2023-03-10 24:00 UTC: "
                + (
                    "; ".join(f"{r['key']} at {r['fired_at']} ({r['severity']})" for r in hits)
                    or "none"
                ),
                flush=True,
            )
            if not hits:
                raise SystemExit("the real case failed: no bank alert by the end of 2023-03-10")
        median = statistics.median(walls)
        print(f"\nfinsent backtest, RSS 2023 H1 archive, end to end (median of {len(walls)}):")
        print(f"  wall time                  {median:8.1f} s   (target {TARGET_S:.0f} s: "
              f"{'met' if median <= TARGET_S else 'MISSED'}, {median / TARGET_S:.2f}x of it)")  # fmt: skip
        if reference_s:
            print(f"  reference: model alone     {reference_s:8.1f} s   ({stories:,} stories, "
                  f"{stories / reference_s:,.0f}/s)")  # fmt: skip
            print(f"  backtest / model alone     {median / reference_s:8.2f}x")
        print(f"  alert lists identical across repeats: {len(alert_bytes) == 1}")


if __name__ == "__main__":
    main()
