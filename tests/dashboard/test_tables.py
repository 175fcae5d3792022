"""The pages' tables: feed fields shown as text, and backtest runs and reports read as data."""

from __future__ import annotations

import pandas as pd

from finsent.dashboard.tables import (
    HEADLINE_TABLE_COLUMNS,
    alerts_table,
    backtest_alerts_table,
    backtest_events_table,
    backtest_summary,
    backtests_table,
    gate_verdict,
    headlines_table,
    models_table,
    promotions_table,
    registry_version,
    review_table,
    silences_table,
)

XSS = "<script>alert(1)</script>"


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


def test_tables_show_times_in_the_chosen_zone_and_name_it() -> None:
    frame = pd.DataFrame(
        {
            "published_at": pd.to_datetime(["2025-07-01 09:00"], utc=True),
            "source": ["wire"],
            "topic": ["Earnings"],
            "sentiment": ["negative"],
            "score": [-0.5],
            "title": ["Acme cut"],
            "url": [""],
            "tickers": [("ACME",)],
            "top_tokens": [()],
        }
    )
    table = headlines_table(frame, "Europe/London")  # BST: UTC+1
    assert table.columns[0] == "Time (Europe/London)"
    assert table["Time (Europe/London)"].tolist() == [pd.Timestamp("2025-07-01 10:00")]
    assert frame["published_at"].iloc[0] == pd.Timestamp("2025-07-01 09:00", tz="UTC")

    alerts = pd.DataFrame(
        {
            "key": ["ticker:ACME", "overall"],
            "state": ["firing", "resolved"],
            "severity": ["critical", "warning"],
            "neg_share": [0.8, 0.5],
            "baseline_mean": [0.2, 0.2],
            "zscore": [6.0, 3.1],
            "window_start": pd.to_datetime(["2025-07-01 23:45"] * 2, utc=True),
            "window_end": pd.to_datetime(["2025-07-02 00:00"] * 2, utc=True),
            "acked_by": [None, "dana"],
        }
    )
    shown = alerts_table(alerts, "Asia/Tokyo", frozenset({"ticker:ACME"}))
    assert shown["Window (Asia/Tokyo)"].tolist() == ["2025-07-02 08:45 – 09:00"] * 2
    assert shown["Watchlist"].tolist() == [True, False]
    assert "Watchlist" not in alerts_table(alerts).columns  # no watchlist: no column
    assert alerts_table(alerts)["Window (UTC)"].iloc[0] == "2025-07-01 23:45 – 00:00"

    silences = pd.DataFrame(
        {
            "matcher": ["ticker:*"],
            "severity": [None],
            "ends_at": pd.to_datetime(["2025-01-10 12:00"], utc=True),
            "created_by": ["dana"],
            "comment": [""],
        }
    )
    until = silences_table(silences, "America/New_York")["Until (America/New_York)"]
    assert until.tolist() == [pd.Timestamp("2025-01-10 07:00")]

    events = pd.DataFrame({"name": ["crash"], "start": ["2025-01-10T12:00:00+00:00"]})
    assert backtest_events_table(events, "Asia/Tokyo")["Start (Asia/Tokyo)"].tolist() == [
        pd.Timestamp("2025-01-10 21:00")
    ]


def test_a_stored_model_version_is_the_registrys_before_the_backend() -> None:
    assert registry_version("finsent-attn-1+5021b24b/onnx-int8") == "finsent-attn-1+5021b24b"
    assert registry_version("lexicon-lm-1") == "lexicon-lm-1"


def test_the_gate_verdict_reads_passed_and_reasons_when_the_report_has_them() -> None:
    assert gate_verdict({"passed": True, "reasons": []}) == ("passed", "")
    assert gate_verdict({"passed": False, "reasons": ["F1 fell", "flips"]}) == (
        "refused",
        "F1 fell; flips",
    )
    assert gate_verdict({"passed": False, "reasons": "F1 fell"}) == ("refused", "F1 fell")
    assert gate_verdict({}) == ("", "")
    assert gate_verdict(None) == ("", "")


def test_models_table_counts_stories_per_registry_version_and_lists_strangers() -> None:
    t0 = pd.Timestamp("2025-03-03 09:00", tz="UTC")
    listing = [
        {"version": "base+1", "status": "default", "active": False, "promoted_at": None,
         "created_at": None, "parent": None, "corrections": 0, "report": {}},
        {"version": "cand+2", "status": "passed", "active": True, "promoted_at": t0,
         "created_at": t0, "parent": "base+1", "corrections": 40,
         "report": {"passed": True, "reasons": []}},
    ]  # fmt: skip
    usage = pd.DataFrame(
        {
            "model_version": ["base+1/onnx-int8", "base+1/torch-fp32", "lexicon-lm-1"],
            "stories": [5, 2, 1],
            "first": [t0, t0 - pd.Timedelta(hours=1), t0],
            "last": [t0 + pd.Timedelta(hours=2), t0, t0],
        }
    )

    table = models_table(listing, usage, "Europe/Berlin")

    assert table["Version"].tolist() == ["base+1", "cand+2", "lexicon-lm-1"]
    assert table["Status"].tolist() == ["default", "passed", "not registered"]
    assert table["Active"].tolist() == [False, True, False]
    assert table["Stories scored"].tolist() == [7, 0, 1]
    assert table["First story (Europe/Berlin)"].iloc[0] == pd.Timestamp("2025-03-03 09:00")
    assert table["Last story (Europe/Berlin)"].iloc[0] == pd.Timestamp("2025-03-03 12:00")
    assert pd.isna(table["First story (Europe/Berlin)"].iloc[1])
    assert table["Promoted (Europe/Berlin)"].iloc[1] == pd.Timestamp("2025-03-03 10:00")
    assert table["Gate"].tolist() == ["", "passed", ""]
    assert table["Corrections"].tolist()[:2] == [0, 40]
    assert models_table([], usage.iloc[0:0])["Version"].tolist() == []


def test_promotions_newest_first_and_the_default_named() -> None:
    t0 = pd.Timestamp("2025-03-03 09:00", tz="UTC")
    rows = [
        {"version": "a", "previous": None, "kind": "promote", "at": t0, "by": "dana",
         "reason": XSS},
        {"version": None, "previous": "a", "kind": "rollback", "at": t0 + pd.Timedelta(hours=1),
         "by": "lee", "reason": "drift"},
    ]  # fmt: skip

    table = promotions_table(rows)

    assert table[["Kind", "To", "From", "By", "Reason"]].values.tolist() == [
        ["rollback", "the default", "a", "lee", "drift"],
        ["promote", "a", "the default", "dana", XSS],
    ]


def test_review_table_shows_feed_text_as_text_and_only_web_links() -> None:
    queue = pd.DataFrame(
        {
            "review_score": [8.0],
            "why": ["drove the firing alert on overall"],
            "published_at": pd.to_datetime(["2025-03-03 09:00"], utc=True),
            "source": ["wire"],
            "title": [XSS],
            "sentiment": ["negative"],
            "confidence": [0.4],
            "topic": ["Earnings"],
            "url": ["javascript:alert(1)"],
        }
    )

    table = review_table(queue)

    assert table["Title"].tolist() == [XSS]
    assert table["Link"].tolist() == [None]
    assert list(table.columns)[:3] == ["Review score", "Why", "Time (UTC)"]
