"""Dashboard at scale: first render, fragment refresh and memory over a big store.

A generated SQLite store of 1M scored items and 100k windows (20 topics, 500 tickers, 30 sources;
window sizes 15m, 1h and 1d; a few hundred alerts) is built once and cached, keyed by its size
and the store's schema. ``finsent dashboard`` serves it, and the system Chromium (headless,
driven by Playwright) loads the pages.

What is measured, in the browser:

* first render: from navigation start (``performance.timeOrigin``) of a fresh tab (new browser
  context: empty cache) until the page's script run has finished and every plotly chart on it
  has drawn (its marks, or its axes or "no data" note when empty); on the Overview, at least
  its three charts (trend, topics, volume). On a page without charts, until its script run
  has finished (a dataframe's canvas paints after that and is not waited for). Median of
  ``--loads`` loads, each after the app's query-cache period has passed, so every load runs
  the queries against the store. The report splits it: when the script run started (the
  frontend booted and connected) and finished (the server's part); the rest is drawing.
* fragment refresh: Streamlit marks its root element with the run state; each timer-driven
  fragment rerun shows as ``running`` then ``notRunning``. Its duration is what the browser
  sees from the server's "run started" to "run finished" messages: the queries, building
  the figures and sending them. Median, p95 and max over ``--refresh-seconds`` of ticks.
* memory: the Streamlit server's resident set size, sampled every 10 s while one tab on the
  Overview refreshes every 5 s for ``--minutes``; start, end, peak, and the least-squares slope
  in MB per 10 minutes (also over the second half only, after warm-up).

Reference, measured in the same run with the same procedure: a small store (1% of the size:
10k items, 1k windows), with the ratio big/small beside each figure, and an empty store's time
to an idle page.

    .venv/bin/python bench/bench_dashboard.py            # full: 30 min of memory sampling
    .venv/bin/python bench/bench_dashboard.py --quick    # 2 min of memory sampling
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores
from sqlalchemy.schema import CreateIndex, CreateTable

from finsent.core.records import Alert, Headline
from finsent.core.settings import Settings
from finsent.runtime.store import Commit, Store, metadata

ROOT = Path(__file__).resolve().parents[1]
TARGET_FIRST_RENDER_S = 2.0
TARGET_REFRESH_S = 0.5
REFRESH_SECONDS = 5.0
SIZES = (900, 3600, 86400)  # 15m, 1h, 1d
OVERVIEW_CHARTS = 3  # trend, topics, volume
TOPICS = [
    "Earnings", "Markets", "Macro", "Financials", "Energy | Oil", "Technology", "M&A",
    "Regulation", "Crypto", "Commodities", "Real Estate", "Healthcare", "Retail", "Autos",
    "Telecom", "Utilities", "Bonds", "Currencies", "Labor", "Legal",
]  # fmt: skip
SOURCES = [f"{name} {kind}" for name in ("Reuters", "Bloomberg", "AP", "CNBC", "FT", "WSJ",
           "MarketWatch", "Barron's", "Yahoo", "Seeking Alpha") for kind in ("wire", "feed", "api")]  # fmt: skip
VERBS = ["beats", "misses", "cuts", "raises", "holds", "warns on", "reaffirms", "slashes",
         "lifts", "delays", "expands", "settles"]  # fmt: skip
OBJECTS = ["guidance", "estimates", "dividend", "buyback", "outlook", "forecast", "jobs",
           "prices", "capex", "margins", "deal talks", "probe"]  # fmt: skip
WORDS = ["loss", "growth", "warning", "record", "strong", "weak", "cut", "beat", "miss", "probe",
         "upgrade", "downgrade", "surge", "slump"]  # fmt: skip


def _load_support() -> Any:
    """The browser tests' helpers (tests/support is not installed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support import browser

    return browser


bs = _load_support()


# -- the generated store --------------------------------------------------------------------


def schema_hash() -> str:
    """Changes whenever the store's tables or indexes do, so a cached store is never stale."""
    ddl = []
    for table in metadata.sorted_tables:
        ddl.append(str(CreateTable(table)))
        ddl += sorted(str(CreateIndex(ix)) for ix in table.indexes)
    return hashlib.sha256("\n".join(ddl).encode()).hexdigest()[:10]


def _ts(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text: naive UTC with microseconds."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def tickers(rng: random.Random, n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    found: set[str] = set()
    while len(found) < n:
        found.add("".join(rng.choice(letters) for _ in range(rng.choice((2, 3, 3, 4, 4)))))
    return sorted(found)


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(n)]


@dataclass
class BuiltStore:
    url: str
    path: Path
    items: int
    windows: int
    alerts: int
    end: datetime
    build_s: float | None  # None: taken from the cache


def build_store(
    path: Path, n_items: int, n_windows: int, n_tickers: int, end: datetime, seed: int = 7
) -> None:
    """Write the store at ``path`` (which must not exist): the schema through ``Store``, the
    bulk rows through sqlite3's executemany in one transaction, alerts through ``Store``."""
    rng = random.Random(seed)
    url = f"sqlite:///{path}"
    Store(url).close()  # the schema, stamped, exactly as the stages make it
    ticks = tickers(rng, n_tickers)
    dense_keys = ["overall"] + [f"topic:{t}" for t in TOPICS] + [f"source:{s}" for s in SOURCES]
    per_day = len(dense_keys) * sum(86400 // size for size in SIZES)
    # Dense series (overall, topics, sources) take ~86% of the windows; tickers, sparse, the rest.
    span = timedelta(days=max(0.86 * n_windows / per_day, 2 / 96))
    start = end - span
    topic_w = _zipf_weights(len(TOPICS))
    source_w = _zipf_weights(len(SOURCES), 0.8)
    ticker_w = _zipf_weights(len(ticks))

    def headline_json(k: int) -> str:
        return json.dumps(
            [
                {
                    "id": f"{rng.getrandbits(128):032x}",
                    "title": f"{rng.choice(ticks)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}",
                    "score": round(rng.uniform(-1, 1), 3),
                    "source": rng.choice(SOURCES),
                    "url": "",
                    "top_tokens": rng.sample(WORDS, 3),
                }
                for _ in range(k)
            ]
        )

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-400000")
    con.execute("BEGIN")
    # Bulk loads are faster with the secondary indexes built afterwards, once.
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
        " AND tbl_name IN ('scored_items', 'windows')"
    ).fetchall()
    for name, _sql in indexes:
        con.execute(f'DROP INDEX "{name}"')

    span_s = span.total_seconds()

    def item_rows():
        for _ in range(n_items):
            at = start + timedelta(seconds=rng.random() * span_s)
            ident = f"{rng.getrandbits(128):032x}"
            named = rng.choices(ticks, ticker_w, k=rng.choice((1, 1, 1, 2)))
            score = rng.uniform(-1, 1)
            sentiment = "negative" if score < -0.2 else "positive" if score > 0.2 else "neutral"
            source = rng.choices(SOURCES, source_w)[0]
            yield (
                ident,
                _ts(at),
                source,
                f"{named[0]} {rng.choice(VERBS)} {rng.choice(OBJECTS)}",
                f"https://news.example/{ident}",
                rng.choices(TOPICS, topic_w)[0],
                sentiment,
                score,
                rng.uniform(0.4, 1.0),
                json.dumps(named),
                json.dumps(rng.sample(WORDS, 3)),
                "attn-bench",
            )

    con.executemany("INSERT INTO scored_items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", item_rows())

    def window_row(key: str, begin: datetime, size: int) -> tuple:
        count = rng.randint(1, 400)
        mean = rng.uniform(-0.6, 0.6)
        neg = rng.uniform(0.05, 0.7)
        finish = begin + timedelta(seconds=size)
        return (
            key,
            _ts(begin),
            _ts(finish),
            size,
            count,
            count * rng.uniform(0.6, 1.0),
            mean,
            mean * rng.uniform(0.8, 1.2),
            neg,
            rng.uniform(0, 1 - neg),
            neg * rng.uniform(0.8, 1.2),
            headline_json(3),
            1,
            1,
            _ts(finish + timedelta(seconds=rng.uniform(5, 300))),
        )

    def aligned(size: int) -> datetime:
        """The first window start of this size inside the span, as the aggregator aligns."""
        return datetime.fromtimestamp((start.timestamp() // size + 1) * size, UTC)

    def slots(size: int) -> int:
        return int((end - aligned(size)).total_seconds() // size)

    rows: list[tuple] = []
    for size in SIZES:
        first = aligned(size)
        for key in dense_keys:
            rows += [
                window_row(key, first + timedelta(seconds=i * size), size)
                for i in range(slots(size))
            ]
    rows = rows[:n_windows]
    taken: set[tuple[str, int, int]] = set()
    while len(rows) + len(taken) < n_windows:
        size = rng.choices(SIZES, (0.7, 0.25, 0.05))[0]
        if slots(size) < 1:
            size = SIZES[0]
        slot = rng.randrange(slots(size))
        taken.add((rng.choices(ticks, ticker_w)[0], size, slot))
    rows += [
        window_row(f"ticker:{t}", aligned(size) + timedelta(seconds=slot * size), size)
        for t, size, slot in sorted(taken)
    ]
    con.executemany("INSERT INTO windows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    for _name, sql in indexes:
        con.execute(sql)
    con.execute("COMMIT")
    con.close()

    # Alerts through the store's own write path (few, and with their lifecycle events).
    events = []
    n_alerts = max(10, n_windows // 300)
    for i in range(n_alerts):
        key = rng.choice([f"topic:{rng.choice(TOPICS)}", f"ticker:{rng.choice(ticks)}", "overall"])
        begin = end - timedelta(minutes=15 * rng.randrange(1, max(2, int(span_s // 900))))
        state = "firing" if i % 8 == 0 else "resolved"
        events.append(
            Alert(
                id=f"bench-alert-{i}",
                key=key,
                state=state,
                severity=rng.choice(("warning", "critical")),
                rule="neg_share_z",
                window_start=begin,
                window_end=begin + timedelta(minutes=15),
                neg_share=rng.uniform(0.5, 0.9),
                baseline_mean=0.2,
                baseline_std=0.08,
                zscore=rng.uniform(3, 9),
                count=rng.randint(5, 80),
                headlines=(Headline(id="h", title=f"{key} under pressure", score=-0.6),),
                started_at=begin,
                updated_at=begin,
                message=f"negative spike on {key}",
            )
        )
    store = Store(url)
    store.commit(Commit(stage="bench", alerts=events))
    store.close()


def cached_store(
    cache: Path, n_items: int, n_windows: int, n_tickers: int, max_age_h: float
) -> BuiltStore:
    """The generated store for these sizes, built if the cache has none young enough (the data
    ends at build time: pages that look back from the wall clock must find it)."""
    stem = f"dashboard-{n_items}-{n_windows}-{n_tickers}-{schema_hash()}"
    path = cache / f"{stem}.db"
    meta_path = cache / f"{stem}.json"
    now = datetime.now(UTC)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        end = datetime.fromisoformat(meta["end"])
        if now - end < timedelta(hours=max_age_h):
            return BuiltStore(
                f"sqlite:///{path}", path, n_items, n_windows, meta["alerts"], end, None
            )
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{stem}.*"):
        old.unlink()
    for old in cache.glob(f"{stem}.db-*"):
        old.unlink()
    end = now.replace(second=0, microsecond=0)
    building = cache / f"{stem}.building.db"
    for leftover in cache.glob(f"{stem}.building.db*"):
        leftover.unlink()
    t0 = time.perf_counter()
    build_store(building, n_items, n_windows, n_tickers, end)
    con = sqlite3.connect(building)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n_alerts = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    con.close()
    built_s = time.perf_counter() - t0
    building.rename(path)
    meta_path.write_text(json.dumps({"end": end.isoformat(), "alerts": n_alerts}))
    return BuiltStore(f"sqlite:///{path}", path, n_items, n_windows, n_alerts, end, built_s)


def check_store(store: BuiltStore) -> None:
    con = sqlite3.connect(store.path)
    (items,) = con.execute("SELECT count(*) FROM scored_items").fetchone()
    (wins,) = con.execute("SELECT count(*) FROM windows").fetchone()
    con.close()
    if (items, wins) != (store.items, store.windows):
        raise SystemExit(f"generated store holds {items} items and {wins} windows")


# -- browser measurements -------------------------------------------------------------------

# Records every change of Streamlit's run state on the root element, with performance.now().
RUN_STATE_LOG = """
window.__runs = [];
const hook = () => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) { requestAnimationFrame(hook); return; }
  let last = app.getAttribute('data-test-script-state');
  window.__runs.push([performance.now(), last]);
  new MutationObserver(() => {
    const now = app.getAttribute('data-test-script-state');
    if (now !== last) { window.__runs.push([performance.now(), now]); last = now; }
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
};
document.addEventListener('DOMContentLoaded', hook);
"""

# A chart is drawn once plotly has put in its marks, or at least its axes or a note (a chart may be
# empty on a small store).
DRAWN = "g.trace, g.hm, g.xtick, g.annotation, text.gtitle"
# True (as ms since navigation start) once the run is over and every chart is drawn.
RENDERED = """
(minPlots) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')) {
    return false;
  }
  const plots = document.querySelectorAll('.js-plotly-plot');
  if (plots.length < minPlots) return false;
  for (const plot of plots) if (!plot.querySelector('DRAWN')) return false;
  return performance.now();
}
""".replace("DRAWN", DRAWN)


def run_durations(runs: list[list[Any]], after_ms: float = 0.0) -> list[float]:
    """Seconds from each "running" to the next "notRunning", for runs starting after after_ms."""
    out = []
    started = None
    for at, state in runs:
        if state == "running":
            started = at
        elif state == "notRunning" and started is not None:
            if started >= after_ms:
                out.append((at - started) / 1000)
            started = None
    return out


def run_starts(runs: list[list[Any]]) -> list[float]:
    return [at / 1000 for at, state in runs if state == "running"]


@dataclass
class PageLoad:
    render_s: float  # navigation start to rendered
    run_start_s: float | None  # navigation start to the page's script run starting
    run_end_s: float | None  # ... and finishing (the charts draw after it)
    plots: int


class RenderError(RuntimeError):
    """A page that did not finish rendering in time."""


RENDER_TIMEOUT_MS = 90_000


def wait_rendered(page: Any, min_plots: int) -> float:
    """Milliseconds from navigation start until the page is rendered (see RENDERED)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(
            RENDERED, arg=min_plots, polling="raf", timeout=RENDER_TIMEOUT_MS
        )
    except PlaywrightTimeout:
        state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        plots = page.locator(bs.PLOTS).count()
        drawn = page.locator(f"{bs.PLOTS}:has({DRAWN})").count()
        errors = " | ".join(e.strip()[:300] for e in bs.app_errors(page))
        raise RenderError(
            f"{page.url}: not rendered after {RENDER_TIMEOUT_MS / 1000:g} s (run state {state},"
            f" {drawn} of {plots} charts drawn, {min_plots} expected){' ' + errors if errors else ''}"
        ) from None
    return handle.json_value()


def load_once(browser: Any, url: str, min_plots: int) -> PageLoad:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(RUN_STATE_LOG)
        page.goto(url)
        render_ms = wait_rendered(page, min_plots)
        runs = page.evaluate("window.__runs")
        starts = [at / 1000 for at, state in runs if state == "running"]
        ends = [at / 1000 for at, state in runs if state == "notRunning"]
        plots = page.locator(bs.PLOTS).count()
        return PageLoad(
            render_ms / 1000, starts[0] if starts else None, ends[0] if ends else None, plots
        )
    finally:
        context.close()


def settled_plot_count(browser: Any, url: str) -> int:
    """How many charts the page draws once settled (a warm-up load, not measured)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url)
        wait_rendered(page, 0)
        page.wait_for_timeout(3000)
        return page.locator(bs.PLOTS).count()
    finally:
        context.close()


@dataclass
class Refresh:
    durations: list[float]
    intervals: list[float]


def observe_refresh(browser: Any, url: str, seconds: float, min_plots: int) -> Refresh:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(RUN_STATE_LOG)
        page.goto(url)
        rendered_ms = wait_rendered(page, min_plots)
        page.wait_for_timeout(seconds * 1000)
        runs = page.evaluate("window.__runs")
        # Timer-driven reruns only: those that start after the first full render.
        durations = run_durations(runs, after_ms=rendered_ms)
        starts = [s for s in run_starts(runs) if s * 1000 >= rendered_ms]
        intervals = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        return Refresh(durations, intervals)
    finally:
        context.close()


@dataclass
class Memory:
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, RSS bytes)
    ticks: int = 0
    js_heap: tuple[int, int] | None = None


def watch_memory(browser: Any, url: str, pid: int, minutes: float, every_s: float = 10.0):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    memory = Memory()
    try:
        page = context.new_page()
        page.add_init_script(RUN_STATE_LOG)
        page.goto(url)
        page.wait_for_selector(bs.APP_IDLE, state="attached", timeout=120_000)
        page.wait_for_timeout(5000)
        heap = "performance.memory ? performance.memory.usedJSHeapSize : 0"
        heap0 = page.evaluate(heap)
        t0 = time.monotonic()
        deadline = t0 + minutes * 60
        while True:
            now = time.monotonic()
            memory.samples.append((now - t0, bs.rss_bytes(pid)))
            if now >= deadline:
                break
            page.wait_for_timeout(min(every_s, deadline - now) * 1000)
        memory.ticks = len(run_durations(page.evaluate("window.__runs")))
        memory.js_heap = (heap0, page.evaluate(heap))
        return memory
    finally:
        context.close()


def slope_mb_per_10min(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [rss / 2**20 for _, rss in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / var * 600 if var else float("nan")


# -- the run ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def fmt(seconds: float) -> str:
    return f"{seconds:6.2f} s"


def ratio(big: float, small: float) -> str:
    return f"{big / small:5.2f}x" if small and small == small and big == big else "   —  "


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


@dataclass
class PageFigures:
    render: list[PageLoad]
    refresh: Refresh | None = None
    error: str = ""


def measure_pages(
    browser: Any, server: Any, pages: list[str], loads: int, refresh_s: float, quiet_s: float
) -> dict[str, PageFigures]:
    figures: dict[str, PageFigures] = {}
    for name in pages:
        url = server.url(name)
        min_plots = 0
        figures[name] = PageFigures([])
        try:
            min_plots = settled_plot_count(browser, url)
            if name == "overview":
                min_plots = max(min_plots, OVERVIEW_CHARTS)
            for _ in range(loads):
                time.sleep(quiet_s)  # past the query cache's lifetime: each load queries the store
                figures[name].render.append(load_once(browser, url, min_plots))
            if refresh_s:
                figures[name].refresh = observe_refresh(browser, url, refresh_s, min_plots)
        except RenderError as exc:
            figures[name].error = str(exc)
            print(f"  {name:10s} FAILED: {exc}", flush=True)
            continue
        load = median([r.render_s for r in figures[name].render])
        print(f"  {name:10s} first render {fmt(load)} ({min_plots} charts)", flush=True)
    return figures


def serve(store_url: str, workdir: Path) -> Any:
    return bs.Dashboard(
        store_url,
        workdir,
        refresh_seconds=REFRESH_SECONDS,
        env={"FINSENT_CACHE_DIR": str(workdir / "cache")},
    ).start(timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--windows", type=int, default=100_000)
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--loads", type=int, default=3, help="fresh page loads per page")
    parser.add_argument(
        "--pages", default=",".join(bs.PAGES), help="comma-separated pages; the first is main"
    )
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=30,
        help="how long to watch timer-driven refreshes, per page (the small store: half)",
    )
    parser.add_argument("--minutes", type=float, default=30, help="memory watch (0: skip)")
    parser.add_argument("--quick", action="store_true", help="2 minutes of memory watching")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--max-age-hours", type=float, default=6.0)
    parser.add_argument("--build-only", action="store_true", help="make the stores and stop")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.quick:
        args.minutes = min(args.minutes, 2.0)
    reason = bs.missing_browser_reason()
    if reason:
        raise SystemExit(f"bench_dashboard: {reason}")
    from playwright.sync_api import sync_playwright

    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    cache = args.cache_dir or Settings().cache_dir / "bench"
    quiet_s = REFRESH_SECONDS / 2 + 0.5  # the app caches queries for half a refresh period

    print(f"store: {args.items:,} scored items, {args.windows:,} windows (cache: {cache})")
    big = cached_store(cache, args.items, args.windows, args.tickers, args.max_age_hours)
    check_store(big)
    built = f"built in {big.build_s:.1f} s" if big.build_s is not None else "from the cache"
    size_mb = big.path.stat().st_size / 2**20
    print(f"  {big.path.name}: {size_mb:,.0f} MB, {big.alerts} alerts, {built}")
    small_items, small_windows = max(1, args.items // 100), max(1, args.windows // 100)
    small = cached_store(cache, small_items, small_windows, args.tickers, args.max_age_hours)
    check_store(small)
    if args.build_only:
        return

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = bs.launch_chromium(pw, "--enable-precise-memory-info")
        try:
            print("reference: an empty store")
            server = serve(f"sqlite:///{work / 'empty.db'}", work)
            try:
                empty = [load_once(browser, server.url(pages[0]), 0) for _ in range(args.loads)]
            finally:
                server.stop()
            print(f"  {pages[0]:10s} idle page    {fmt(median([e.render_s for e in empty]))}")

            print(f"reference: a small store ({small_items:,} items, {small_windows:,} windows)")
            server = serve(small.url, work)
            try:
                ref = measure_pages(
                    browser, server, pages, args.loads, args.refresh_seconds / 2, quiet_s
                )
            finally:
                server.stop()

            print(f"big store ({args.items:,} items, {args.windows:,} windows)")
            server = serve(big.url, work)
            try:
                cold = load_once(browser, server.url(pages[0]), 0)
                print(f"  cold first load after server start (idle page): {fmt(cold.render_s)}")
                res = measure_pages(
                    browser, server, pages, args.loads, args.refresh_seconds, quiet_s
                )
                memory = None
                if args.minutes > 0:
                    print(f"memory: {pages[0]} refreshing every {REFRESH_SECONDS:g} s for "
                          f"{args.minutes:g} min", flush=True)  # fmt: skip
                    memory = watch_memory(browser, server.url(pages[0]), server.pid, args.minutes)
            finally:
                server.stop()
        finally:
            browser.close()

    report(pages, res, ref, empty, memory, args)


def report(pages, res, ref, empty, memory, args) -> None:
    print()
    print(f"{'first render (median of ' + str(args.loads) + ')':34s} {'big':>8s} {'small':>8s}"
          f" {'ratio':>6s}  target")  # fmt: skip
    for name in pages:
        if res[name].error or ref[name].error:
            print(f"  {name:32s} not measured: {res[name].error or ref[name].error}")
            continue
        b = median([r.render_s for r in res[name].render])
        s = median([r.render_s for r in ref[name].render])
        starts = [r.run_start_s for r in res[name].render if r.run_start_s is not None]
        ends = [r.run_end_s for r in res[name].render if r.run_end_s is not None]
        extra = ""
        if starts and ends:
            extra = f"  (script run from {median(starts):.2f} s to {median(ends):.2f} s)"
        print(f"  {name:32s} {fmt(b)} {fmt(s)} {ratio(b, s)}  <= {TARGET_FIRST_RENDER_S:g} s "
              f"{verdict(b, TARGET_FIRST_RENDER_S)}{extra}")  # fmt: skip
    e = median([x.render_s for x in empty])
    print(f"  {'(empty store, ' + pages[0] + ', idle)':32s} {fmt(e)}")
    if args.refresh_seconds:
        print()
        print(f"{'fragment refresh (median / p95 / max)':40s} {'big':>26s}   {'small med':>9s}"
              "  target")  # fmt: skip
        for name in pages:
            r, s = res[name].refresh, ref[name].refresh
            if res[name].error or ref[name].error:
                print(f"  {name:38s} not measured")
                continue
            if r is None or not r.durations:
                print(f"  {name:38s} no timer-driven reruns seen")
                continue
            med = median(r.durations)
            print(
                f"  {name:38s} {med:6.3f} / {p95(r.durations):6.3f} / {max(r.durations):6.3f} s"
                f"   {median(s.durations) if s and s.durations else float('nan'):7.3f} s"
                f"  <= {TARGET_REFRESH_S:g} s {verdict(med, TARGET_REFRESH_S)}"
                f"  ({len(r.durations)} ticks, interval median {median(r.intervals):.2f} s,"
                f" max {max(r.intervals, default=float('nan')):.2f} s)"
            )
    if memory is not None and memory.samples:
        rss = [b / 2**20 for _, b in memory.samples]
        half = memory.samples[len(memory.samples) // 2 :]
        print()
        print(f"memory (Streamlit server RSS, {pages[0]}, {args.minutes:g} min,"
              f" {memory.ticks} refreshes, {len(rss)} samples)")  # fmt: skip
        print(f"  start {rss[0]:7.1f} MB   end {rss[-1]:7.1f} MB   peak {max(rss):7.1f} MB")
        print(
            f"  slope {slope_mb_per_10min(memory.samples):+6.2f} MB / 10 min (all samples),"
            f" {slope_mb_per_10min(half):+6.2f} MB / 10 min (second half)   target: flat"
        )
        if memory.js_heap:
            a, b = (v / 2**20 for v in memory.js_heap)
            print(f"  browser tab JS heap {a:.1f} MB -> {b:.1f} MB")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
