"""The dashboard page, run headless by Streamlit's AppTest against a temporary SQLite store,
and the store queries behind it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from dashboard import queries
from finsent.records import Alert, Headline, NewsItem, ScoredItem, WindowStat
from finsent.settings import get_settings
from finsent.store import Commit, Store, alerts

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
XSS = "<script>alert(1)</script>"


def scored(n: int, title: str, topic: str = "Earnings", score: float = -0.5) -> ScoredItem:
    at = T0 + n * timedelta(minutes=1)
    item = NewsItem(
        id=f"item-{n}",
        source="wire",
        title=title,
        published_at=at,
        fetched_at=at,
        tickers=("ACME",),
    )
    return ScoredItem(
        item=item,
        topic=topic,
        sentiment="negative" if score < 0 else "positive",
        score=score,
        confidence=0.9,
        top_tokens=("loss", "warning"),
        model_version="test",
        scored_at=at,
    )


def window(key: str, i: int, count: int, mean: float, neg: float) -> WindowStat:
    start = T0 + i * WINDOW
    return WindowStat(
        key=key,
        window_start=start,
        window_end=start + WINDOW,
        count=count,
        weighted_count=float(count),
        mean_score=mean,
        weighted_mean_score=mean,
        neg_share=neg,
        pos_share=1 - neg,
        top_headlines=(Headline(id="item-0", title=XSS, score=mean),),
        emitted_at=start + WINDOW + timedelta(minutes=5),
    )


def alert(key: str, i: int, state: str = "firing") -> Alert:
    start = T0 + i * WINDOW
    return Alert(
        id=f"alert-{key}",
        key=key,
        state=state,
        severity="critical",
        rule="neg_share_z",
        window_start=start,
        window_end=start + WINDOW,
        neg_share=0.8,
        baseline_mean=0.2,
        baseline_std=0.1,
        zscore=6.0,
        count=12,
        started_at=start,
        updated_at=start,
        message=f"negative spike on {key}",
    )


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store, made the dashboard's through FINSENT_STORE_URL."""
    url = f"sqlite:///{tmp_path / 'finsent.db'}"
    monkeypatch.delenv("FINSENT_CONFIG", raising=False)
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    st.cache_data.clear()  # the app's query cache is process-wide
    yield url
    get_settings.cache_clear()
    st.cache_data.clear()


def run_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def populate(url: str) -> None:
    items = [
        scored(0, XSS),
        scored(1, "Acme beats estimates", "Markets", 0.6),
        scored(2, "Acme cut"),
    ]
    windows = [window("overall", i, 10 + i, -0.1 * i, 0.2 + 0.1 * i) for i in range(4)]
    windows += [window("topic:Earnings", i, 5, -0.2, 0.5) for i in range(4)]
    windows += [window("topic:Markets", i, 3, 0.3, 0.1) for i in range(2)]
    alerts = [alert("overall", 3), alert("topic:Markets", 1, state="resolved")]
    Store(url).commit(Commit(stage="test", scored=items, windows=windows, alerts=alerts))


def test_queries_on_a_new_store(store_url: str) -> None:
    summary = queries.store_summary(store_url)

    assert summary == queries.StoreSummary(0, 0, 0, None, None)
    assert summary.empty
    assert queries.load_windows(store_url, key="overall").empty
    assert queries.load_alerts(store_url).empty
    assert queries.load_headlines(store_url).empty


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


def test_queries_summarize_the_store(store_url: str) -> None:
    populate(store_url)

    summary = queries.store_summary(store_url)

    assert (summary.scored_items, summary.windows, summary.firing_alerts) == (3, 10, 1)
    assert summary.last_update == T0 + 4 * WINDOW + timedelta(minutes=5)
    assert summary.latest_window_start == T0 + 3 * WINDOW
    assert not summary.empty


def test_empty_store_shows_waiting(store_url: str) -> None:
    at = run_app()

    assert at.title[0].value == "finsent"
    assert metrics(at) == {
        "Items scored": "0",
        "Windows": "0",
        "Firing alerts": "0",
        "Last update (UTC)": "—",
    }
    assert any("Waiting for data" in info.value for info in at.info)
    assert len(at.dataframe) == 0


def test_populated_store_shows_counts_charts_and_tables(store_url: str) -> None:
    populate(store_url)
    at = run_app()

    assert metrics(at) == {
        "Items scored": "3",
        "Windows": "10",
        "Firing alerts": "1",
        # The newest emission, the last window's end plus five minutes; not today, so dated.
        "Last update (UTC)": "Mar 03 10:05",
    }
    assert not at.info
    assert len(at.get("plotly_chart")) == 3

    alerts_df, headlines_df = (frame.value for frame in at.dataframe)
    assert list(alerts_df["Key"]) == ["overall", "topic:Markets"]  # firing first
    assert list(alerts_df["State"]) == ["firing", "resolved"]
    assert alerts_df["Z-score"].iloc[0] == pytest.approx(6.0)
    assert alerts_df["Window (UTC)"].iloc[0] == "2025-03-03 09:45 – 10:00"

    assert list(headlines_df.columns) == [
        "Time (UTC)",
        "Source",
        "Topic",
        "Sentiment",
        "Score",
        "Title",
        "Top words",
    ]
    assert list(headlines_df["Title"]) == ["Acme cut", "Acme beats estimates", XSS]  # newest first
    assert headlines_df["Top words"].iloc[0] == "loss, warning"

    # Both topics exist, busiest first, and both are preselected.
    topics = at.multiselect(key="topics")
    assert topics.options == ["Earnings", "Markets"]
    assert topics.value == ["Earnings", "Markets"]


def test_topic_selection_reruns_cleanly(store_url: str) -> None:
    populate(store_url)
    at = run_app()

    at.multiselect(key="topics").set_value(["Markets"]).run()

    assert not at.exception
    assert at.multiselect(key="topics").value == ["Markets"]


def leaves(block: Block) -> Iterator[Node]:
    for child in block.children.values():
        if isinstance(child, Block):
            yield from leaves(child)
        else:
            yield child


def test_feed_text_is_never_rendered_as_html(store_url: str) -> None:
    populate(store_url)
    at = run_app()

    headlines = at.dataframe[1].value
    assert XSS in set(headlines["Title"])  # shown verbatim, as cell text

    # Outside the dataframes, no element carries the title, and none renders raw HTML.
    elements = [e for root in (at.main, at.sidebar) for e in leaves(root)]
    assert {e.type for e in elements} >= {"title", "metric", "plotly_chart", "dataframe"}
    for element in elements:
        assert element.type != "html"
        assert not getattr(element.proto, "allow_html", False), element.type
        if element.type != "dataframe":
            assert "<script" not in str(element.proto), element.type


def test_an_alert_is_acknowledged_from_the_dashboard(store_url: str) -> None:
    populate(store_url)
    at = run_app()
    assert at.selectbox(key="ack_alert").options  # the firing alert is offered
    at.text_input(key="ack_owner").set_value("dana")
    at.text_input(key="ack_comment").set_value("looking at bank exposure")
    at.button[0].click().run()
    assert not at.exception
    [row] = [r for r in Store(store_url).query(alerts) if r["state"] == "firing"]
    assert (row["acked_by"], row["ack_comment"]) == ("dana", "looking at bank exposure")
    alerts_df = at.dataframe[0].value
    assert alerts_df["Acknowledged by"].iloc[0] == "dana"
