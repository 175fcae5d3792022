"""The pure building blocks of the dashboard's pages: safe feed text, tables, the window size
a page shows, and the consumer lag. (The pages themselves run in test_app.py.)"""

from __future__ import annotations

import html
import io
import threading
import time

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.settings import Settings
from finsent.dashboard.common import duration_label, pick_size, window_sizes
from finsent.dashboard.lag import EndOffsetsProbe, Lag, compute_lag, consumer_lag, probe_for
from finsent.dashboard.safe import csv_bytes, escape_text, headline_html, highlight
from finsent.dashboard.tables import (
    HEADLINE_TABLE_COLUMNS,
    backtest_alerts_table,
    backtest_events_table,
    backtest_summary,
    backtests_table,
    headlines_table,
)

XSS = "<script>alert(1)</script>"

# -- feed text --------------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(min_codepoint=32, blacklist_categories=("Cs",))))
def test_escaped_text_reads_as_itself_and_holds_no_markup(text: str) -> None:
    escaped = escape_text(text)

    assert html.unescape(escaped) == text.replace("\x7f", " ")
    # Nothing left that HTML or Markdown would read as syntax.
    assert not set(escaped) & set("<>\"'`*_[]()|~$\\")
    assert "&" not in escaped.replace("&#", "")


def test_escape_text_neutralizes_html_markdown_and_control_characters() -> None:
    assert escape_text(XSS) == "&#60;script&#62;alert&#40;1&#41;&#60;&#47;script&#62;"
    assert "[" not in escape_text("[click](javascript:alert(1))")
    assert "$" not in escape_text("$x^2$ and **bold**")
    assert escape_text("a\nb\tc") == "a b c"


def test_highlight_marks_whole_attended_words_only() -> None:
    marked = highlight("Loss warning: Acme's losses <b>widen</b>", ["loss", "widen", "<b>"])

    assert marked.startswith("<mark>Loss</mark> warning")
    assert "losses" in marked and "<mark>losses</mark>" not in marked  # whole words only
    assert "&#60;b&#62;<mark>widen</mark>&#60;&#47;b&#62;" in marked
    assert highlight(XSS, ["script"]).count("<mark>") == 2
    assert highlight("plain", []) == "plain"


def test_headline_html_links_only_safe_urls() -> None:
    line = headline_html(XSS, ["alert"], url="https://n.example/?a=1&b=2", meta="wire · -0.50")

    assert line.startswith("<div>&#60;script&#62;<mark>alert</mark>")
    assert 'href="https://n.example/?a=1&amp;b=2"' in line
    assert 'rel="noopener noreferrer nofollow"' in line
    assert "<small>wire · &#45;0&#46;50</small>" in line
    assert "href" not in headline_html("t", url="javascript:alert(1)")


def test_csv_export_disarms_spreadsheet_formulas() -> None:
    frame = pd.DataFrame(
        {
            "Title": ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "fine", XSS],
            "Score": [1, 2, 3, 4, 5, 6],
        }
    )

    back = pd.read_csv(io.BytesIO(csv_bytes(frame)))

    assert back["Title"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "fine",
        XSS,  # text, as in the table: a spreadsheet does not run HTML
    ]
    assert back["Score"].tolist() == [1, 2, 3, 4, 5, 6]  # numbers stay numbers


# -- tables -----------------------------------------------------------------------------------


def test_headlines_table_shows_feed_fields_as_text_and_links_only_web_urls() -> None:
    frame = pd.DataFrame(
        {
            "published_at": pd.to_datetime(["2025-03-03 09:00", "2025-03-03 09:01"], utc=True),
            "source": ["wire", "globe"],
            "topic": ["Earnings", "Markets"],
            "sentiment": ["negative", "positive"],
            "score": [-0.5, 0.6],
            "title": [XSS, "Acme beats"],
            "url": ["javascript:alert(1)", "https://n.example/1"],
            "tickers": [("ACME",), ("ACME", "BETA")],
            "top_tokens": [("loss", "warning"), ()],
        }
    )

    table = headlines_table(frame)

    assert list(table.columns) == HEADLINE_TABLE_COLUMNS
    assert table["Title"].tolist() == [XSS, "Acme beats"]
    assert table["Link"].fillna("").tolist() == ["", "https://n.example/1"]
    assert table["Tickers"].tolist() == ["ACME", "ACME, BETA"]
    assert table["Top words"].tolist() == ["loss, warning", ""]
    assert table["Time (UTC)"].dt.tz is None  # shown as UTC wall time
    assert list(headlines_table(frame.iloc[:0]).columns) == HEADLINE_TABLE_COLUMNS


def test_backtests_table() -> None:
    runs = pd.DataFrame(
        {
            "id": ["r1"],
            "started_at": pd.to_datetime(["2025-03-03 09:00"], utc=True),
            "finished_at": pd.to_datetime([None], utc=True),
            "feed": ["sample.jsonl"],
            "params": [{"speed": "max"}],
            "report_path": [None],
            "alert_count": [None],
            "status": ["running"],
        }
    )

    table = backtests_table(runs)

    assert table[["Run", "Status", "Params", "Report"]].values.tolist() == [
        ["r1", "running", "speed=max", ""]
    ]
    assert pd.isna(table["Alerts"].iloc[0])


def test_a_backtest_report_reads_as_data() -> None:
    summary = {"stories": 12345, "alerts_fired": 3, "hits": True, "misses": "<b>2</b>"}

    assert backtest_summary({**summary, "seconds": 61.25}) == [
        ("Stories", "12,345"),
        ("Alerts fired", "3"),
        ("Hits", "—"),  # only numbers reach a metric
        ("Misses", "—"),
        ("False alerts", "—"),
        ("Seconds", "61.2"),
    ]

    # As the page reads the files: every cell text, an older file short of columns.
    events = pd.DataFrame(
        {"name": ["SVB", XSS], "result": ["hit", "miss"], "lead_hours": ["2.5", ""]}
    )
    table = backtest_events_table(events)
    assert table["Event"].tolist() == ["SVB", XSS]
    assert table["Lead (h)"].tolist()[0] == 2.5
    assert pd.isna(table["Lead (h)"].iloc[1])
    assert table["First alert (UTC)"].isna().all()
    assert table["Alerts"].isna().all()

    alerts = pd.DataFrame(
        {
            "fired_at": ["2025-03-03T09:30:00+00:00", "soon"],
            "key": ["ticker:SIVB", "overall"],
            "count": ["12", "1.5"],
            "headlines": [XSS, "NA"],
        }
    )
    table = backtest_alerts_table(alerts)
    assert table["Fired (UTC)"].iloc[0] == pd.Timestamp("2025-03-03 09:30")
    assert pd.isna(table["Fired (UTC)"].iloc[1])
    assert table["Headlines"].tolist() == [XSS, "NA"]
    assert table["Stories"].tolist()[0] == 12
    assert pd.isna(table["Stories"].iloc[1])
    assert table["Resolved (UTC)"].isna().all()


# -- window size and labels -------------------------------------------------------------------

SIZES = [(900, 900), (3600, 300), (3600, 3600), (86400, 86400)]


def test_pick_size_keeps_series_readable() -> None:
    day, week = 86400.0, 7 * 86400.0

    assert pick_size(SIZES, 900, day, 500) == 900  # 96 windows
    assert pick_size(SIZES, 900, week, 500) == 3600  # 672 of 15 min; 1 h hops every 5 min: 2016
    assert pick_size([(900, 900), (3600, 300)], 900, week, 500) == 3600  # nothing fits: largest
    assert pick_size(SIZES, 900, 400 * day, 500) == 86400
    assert pick_size(SIZES, 3600, 60.0, 500) == 3600  # never below the preferred size
    assert pick_size(SIZES, 900, None, 500) == 900
    assert pick_size([], 900, day, 500) == 900


def test_window_sizes_from_settings() -> None:
    settings = Settings(windows=("1h/5m", "15m", "1d"))

    assert window_sizes(settings) == [(900, 900), (3600, 300), (86400, 86400)]


def test_duration_labels() -> None:
    assert [duration_label(s) for s in (900, 3600, 5400, 86400, 90)] == [
        "15 min",
        "1 h",
        "90 min",
        "1 d",
        "90 s",
    ]


# -- consumer lag -----------------------------------------------------------------------------


def test_compute_lag_per_stage() -> None:
    stored = {
        ("router", "news.scored", 0): 90,
        ("router", "news.scored", 1): 50,
        ("aggregator", "news.keyed", 0): 410,  # read past an end fetched a moment earlier
        ("alerter", "sentiment.windows", 0): 3,  # no end known: left out
    }
    ends = {("news.scored", 0): 100, ("news.scored", 1): 55, ("news.keyed", 0): 400}

    lag = compute_lag(stored, ends)

    assert lag == Lag(total=15, by_stage={"router": 15, "aggregator": 0})
    assert lag.describe() == "aggregator 0, router 15"


class FakeKafka:
    """End offsets that arrive when the test says so, or an error."""

    def __init__(self, ends: dict[tuple[str, int], int] | None = None) -> None:
        self.ends = ends if ends is not None else {("t", 0): 10}
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self.calls += 1
        self.release.wait(10)
        if self.fail:
            raise ConnectionError("no broker")
        return {p: self.ends[p] for p in partitions}


def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_probe_answers_and_caches_for_max_age() -> None:
    kafka = FakeKafka()
    now = [0.0]
    probe = EndOffsetsProbe(kafka, max_age=5, wait=1, clock=lambda: now[0])

    assert probe.get([("t", 0)]) == {("t", 0): 10}
    now[0] = 4.0
    assert probe.get([("t", 0)]) == {("t", 0): 10}
    assert kafka.calls == 1  # fresh enough: no second call

    now[0] = 6.0
    kafka.ends = {("t", 0): 12}
    kafka.release.clear()  # hold the refresh, or it may land before get() looks again
    assert probe.get([("t", 0)]) == {("t", 0): 10}  # the last answer at once; refreshing behind
    kafka.release.set()
    eventually(lambda: kafka.calls == 2 and probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 12}
    assert probe.get([]) == {}


def test_probe_never_keeps_a_page_waiting_on_a_slow_kafka() -> None:
    kafka = FakeKafka()
    kafka.release.clear()
    probe = EndOffsetsProbe(kafka, wait=0.2)

    started = time.monotonic()
    assert probe.get([("t", 0)]) is None  # waited once, briefly
    assert probe.get([("t", 0)]) is None  # and not again while Kafka is still slow
    assert time.monotonic() - started < 1.0
    assert kafka.calls == 1  # one request in flight at a time

    kafka.release.set()
    eventually(lambda: probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 10}


def test_probe_reads_na_after_a_failure_and_when_its_answer_is_stale() -> None:
    kafka = FakeKafka()
    kafka.fail = True
    now = [0.0]
    probe = EndOffsetsProbe(kafka, max_age=5, stale_after=15, clock=lambda: now[0])

    assert probe.get([("t", 0)]) is None

    kafka.fail = False
    now[0] = 6.0
    probe.get([("t", 0)])
    eventually(lambda: probe._running is None)
    assert probe.get([("t", 0)]) == {("t", 0): 10}

    kafka.release.clear()  # Kafka hangs from now on
    now[0] = 12.0
    assert probe.get([("t", 0)]) == {("t", 0): 10}  # 6 s old: still shown
    now[0] = 30.0
    assert probe.get([("t", 0)]) is None  # too old to show
    kafka.release.set()


def test_consumer_lag_needs_stored_offsets_and_an_answer() -> None:
    kafka = FakeKafka({("news.scored", 0): 100})

    assert consumer_lag({}, EndOffsetsProbe(kafka)) is None
    assert kafka.calls == 0  # nothing stored: Kafka is not asked
    lag = consumer_lag({("router", "news.scored", 0): 60}, EndOffsetsProbe(kafka))
    assert lag == Lag(total=40, by_stage={"router": 40})


def test_an_unreachable_kafka_reads_na_within_about_a_second() -> None:
    probe = probe_for("127.0.0.1:1")  # nothing listens on port 1

    started = time.monotonic()
    lag = consumer_lag({("router", "news.scored", 0): 1}, probe)

    assert lag is None
    assert time.monotonic() - started < 1.5
    assert probe_for("127.0.0.1:1") is probe  # one client per broker address


def test_lag_labels_are_sorted_by_stage() -> None:
    assert Lag(3, {"router": 1, "aggregator": 2}).describe() == "aggregator 2, router 1"
