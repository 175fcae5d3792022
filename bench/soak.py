"""The soak test (issue 21): every stage as its own process on a local broker, a generated feed
at a steady rate for a long time, then lag, memory and exact counts judged (``make soak``).

A local Kafka on free ports, then ``finsent.app.soak.run_soak``: the consuming stages
(scorer with the default model, router, aggregator, alerter, notifier) with the live
settings, isolated by a run prefix, and a feed process on the live ingest path at ``--rate``
stories/s for ``--minutes`` (20 % near-duplicates, 2 % re-polled copies, about 5,000 series
keys). Pass: every stage's consumer lag under 10 s at every sample after the start-up grace;
every stage process's RSS grown by under 5 % from the warm-up mark to the end of the feed; the
window counts reconciled exactly with what went in. Prints the machine, then the summary;
writes ``samples.csv``, ``summary.json``, ``soak.html`` and ``soak.png`` (lag and RSS against
time) and the stage logs into ``--out``. Exits 1 on a failed rule, 2 when no verdict came.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 100] [--warmup-minutes 5] [--out DIR]
    .venv/bin/python bench/soak.py --plot DIR   # redraw the plot of an earlier run
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.app.kafka_local import LocalKafka
from finsent.app.ports import free_port
from finsent.app.soak import (
    BROKER,
    STAGES,
    Sample,
    SoakError,
    SoakRequest,
    format_summary,
    read_samples,
    run_soak,
)
from finsent.core.settings import Settings
from finsent.ingest.generated_feed import FeedShape
from finsent.runtime.process import install_stop_handlers

BENCH_OUT = Path(__file__).resolve().parent / "out"  # git-ignored

# ``--state bounded`` (the default): every part of the stages' state whose size a time span
# sets is given a span shorter than the warm-up, so the state is full by the warm-up mark and
# any RSS growth after it is a leak, not retention. With the live settings (``--state live``:
# 15m/1h/1d windows, an hour's lateness, 1d alert scales, a 48 h dedup horizon) the state
# grows for a day by design at 100 stories/s: the aggregator keeps each open window's story
# ids, the alerter a day of windows per series, the ingest its near-duplicate index.
BOUNDED_STATE = {
    "windows": ("1m", "2m"),
    "grace_seconds": 30,  # the feed publishes stories up to 20 s before they are due
    "allowed_lateness_seconds": 30,
    # A window reaches the alerter about a minute after it ends (grace and lateness), so its
    # longest scale must be well under four minutes for its state to be full by the warm-up.
    "alert_scales": ("1m", "2m"),
    "alert_no_data_windows": 4,  # a quiet series' alert resolves after 4 minutes, not 96
    "dedup_max_indexed": 20_000,  # 200 s of the feed at 100 stories/s
}
PNG_SIZE = (1400, 1000)


@contextlib.contextmanager
def local_broker(home: Path) -> Iterator[tuple[Settings, int | None]]:
    """A single-node Kafka on free ports (jars from the default cache), and its JVM's pid."""
    settings = Settings(
        kafka_port=free_port(), kafka_controller_port=free_port(), partitions=1, metrics_port=None
    )
    broker = LocalKafka(settings, home=home)
    status = broker.start()
    try:
        yield settings, status.pid
    finally:
        broker.stop()


# -- the plot ---------------------------------------------------------------------------------


def figure(samples: Sequence[Sample], marks: dict[str, float], lag_limit_s: float) -> object:
    """Lag (s) per stage above, RSS (MiB) per process below, against seconds since the feed
    started; dotted lines at ``marks`` (grace, warm-up, end of feed), dashed at the lag limit."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "consumer lag per stage (age of the oldest unconsumed record, s)",
            "RSS per process (MiB)",
        ),
    )
    from plotly.colors import qualitative

    times = [s.t_s for s in samples]
    names = list(
        dict.fromkeys([spec.name for spec in STAGES] + [n for s in samples for n in s.rss_mb])
    )
    colors = {name: qualitative.D3[i % len(qualitative.D3)] for i, name in enumerate(names)}
    for spec in STAGES:  # one colour per process in both panels, one legend entry
        lag = [s.lag[spec.name].seconds if spec.name in s.lag else None for s in samples]
        fig.add_scatter(
            x=times, y=lag, name=spec.name, legendgroup=spec.name, mode="lines",
            line={"color": colors[spec.name]}, row=1, col=1,
        )  # fmt: skip
    for name in names:
        rss = [s.rss_mb.get(name) for s in samples]
        if all(v is None for v in rss):
            continue
        fig.add_scatter(
            x=times, y=rss, name=name, legendgroup=name, mode="lines",
            showlegend=name not in {spec.name for spec in STAGES},
            line={"color": colors[name], "dash": "dot" if name == BROKER else "solid"},
            row=2, col=1,
        )  # fmt: skip
    fig.add_hline(y=lag_limit_s, line_dash="dash", line_color="red", row=1, col=1)
    for label, at in marks.items():
        fig.add_vline(x=at, line_dash="dot", line_color="grey", annotation_text=label)
    fig.update_xaxes(title_text="seconds since the feed started", row=2, col=1)
    fig.update_layout(
        width=PNG_SIZE[0], height=PNG_SIZE[1], template="plotly_white", title="finsent soak"
    )
    return fig


def chromium() -> str | None:
    """The system Chromium (scripts/ensure_chromium.sh installs it), as the browser tests
    find it."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def write_plot(
    samples: Sequence[Sample], marks: dict[str, float], lag_limit_s: float, out: Path
) -> tuple[Path, Path | None, str]:
    """``soak.html`` (plotly, self-contained) and, when a Chromium is found, ``soak.png``, a
    headless screenshot of it. Returns both paths (the PNG None when not made) and a note."""
    fig = figure(samples, marks, lag_limit_s)
    html = out / "soak.html"
    fig.write_html(  # type: ignore[attr-defined]
        html, include_plotlyjs=True, full_html=True, config={"displayModeBar": False}
    )
    browser = chromium()
    if browser is None:
        return html, None, "no Chromium found (scripts/ensure_chromium.sh): wrote only the HTML"
    png = out / "soak.png"
    with tempfile.TemporaryDirectory(prefix="finsent-soak-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # as root in a container, Chromium's sandbox cannot start
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={PNG_SIZE[0]},{PNG_SIZE[1]}",
            "--virtual-time-budget=15000",  # let plotly draw before the shot
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return html, None, f"Chromium failed ({exc}): wrote only the HTML"
    if done.returncode != 0 or not png.exists() or png.stat().st_size == 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return html, None, f"Chromium made no screenshot ({' | '.join(tail)}): only the HTML"
    return html, png, "PNG by headless Chromium"


def marks_of(request: SoakRequest, feed_end_s: float) -> dict[str, float]:
    return {
        "grace": request.startup_grace_s,
        "warm-up": request.warmup_minutes * 60,
        "feed end": feed_end_s,
    }


# -- the command ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="feed duration (30)")
    parser.add_argument("--rate", type=float, default=100.0, help="stories a second (100)")
    parser.add_argument(
        "--warmup-minutes", type=float, default=5.0, help="RSS growth is judged after this (5)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (bench/out/soak-*)")
    parser.add_argument("--tickers", type=int, default=FeedShape().tickers, help="(4970)")
    parser.add_argument("--near-share", type=float, default=FeedShape().near_share, help="(0.2)")
    parser.add_argument("--exact-share", type=float, default=FeedShape().exact_share)
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds (5)")
    parser.add_argument("--grace-seconds", type=float, default=30.0, help="lag not judged (30)")
    parser.add_argument("--keep-work", action="store_true", help="keep the store and dedup db")
    parser.add_argument(
        "--state",
        choices=("bounded", "live"),
        default="bounded",
        help="bounded: state spans shorter than the warm-up (windows 1m,2m; alert scales 2m,4m; "
        "30 s grace and lateness; 20,000 stories in the near-duplicate index), so growth "
        "after it is a leak; live: the settings as they are (default bounded)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="only redraw the plot of DIR")
    return parser.parse_args(argv)


def replot(folder: Path) -> int:
    import json

    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    req = summary["request"]
    marks = {
        "grace": req["startup_grace_s"],
        "warm-up": req["warmup_minutes"] * 60,
        "feed end": summary["feed_end_s"],
    }
    samples = read_samples(folder / "samples.csv")
    html, png, note = write_plot(samples, marks, req["lag_limit_s"], folder)
    print(f"plot: {png or html} ({note})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot is not None:
        return replot(args.plot)
    print(machine_line(), flush=True)
    out = args.out or BENCH_OUT / f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        shape = replace(
            FeedShape(),
            tickers=args.tickers,
            near_share=args.near_share,
            exact_share=args.exact_share,
        )
        request = SoakRequest(
            out_dir=out,
            minutes=args.minutes,
            rate=args.rate,
            warmup_minutes=args.warmup_minutes,
            shape=shape,
            sample_every_s=args.sample_every,
            startup_grace_s=args.grace_seconds,
            keep_work=args.keep_work,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = install_stop_handlers(threading.Event())
    print(f"output: {out}", flush=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="finsent-soak-kafka-") as home,
            local_broker(Path(home)) as (settings, broker_pid),
        ):
            print(f"local Kafka at {settings.bootstrap_servers} (pid {broker_pid})", flush=True)
            if args.state == "bounded":
                settings = settings.model_copy(update=BOUNDED_STATE)
            print(
                f"state: {args.state} (windows {','.join(settings.windows)}, alert scales "
                f"{','.join(settings.alert_scales)}, lateness {settings.allowed_lateness_seconds}"
                f" s, near-duplicate index at most {settings.dedup_max_indexed:,} stories)",
                flush=True,
            )
            result = run_soak(
                settings,
                request,
                stop,
                broker_pid=broker_pid,
                say=lambda line: print(line, flush=True),
            )
    except SoakError as exc:
        print(f"error: no verdict: {exc}", file=sys.stderr)
        return 2
    print()
    print(format_summary(result))
    html, png, note = write_plot(
        result.samples, marks_of(request, result.feed_end_s), request.lag_limit_s, out
    )
    print(f"\nsamples: {result.samples_path}\nsummary: {result.summary_path}")
    print(f"plot:    {png or html} ({note})")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
