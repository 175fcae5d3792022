"""The backtest report's pure parts: events files, matching alerts to events, the files."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.app.backtest_report import (
    EventsError,
    KnownEvent,
    ReportInput,
    alert_budget,
    alert_lines,
    first_stories,
    load_events,
    score_events,
    write_report,
)
from finsent.core.records import Alert, Headline

T0 = datetime(2023, 3, 9, tzinfo=UTC)
H = timedelta(hours=1)
XSS = "<img src=x onerror=alert(1)>"


def alert(
    key: str,
    fired: datetime,
    state: str = "firing",
    title: str = "Bank shares fall",
    alert_id: str | None = None,
) -> Alert:
    return Alert(
        id=alert_id or f"{key}|{fired.isoformat()}",
        key=key,
        state=state,  # type: ignore[arg-type]
        severity="warning",
        rule="negative-share-spike",
        window_start=fired - H,
        window_end=fired,
        neg_share=0.9,
        baseline_mean=0.3,
        baseline_std=0.1,
        zscore=4.2,
        count=9,
        headlines=(Headline(id="h", title=title, score=-0.9, source="wire", url=""),),
        started_at=fired - H,
        updated_at=fired,
    )


def event(name: str, key: str | list[str], start: datetime, hours: float) -> KnownEvent:
    return KnownEvent(name=name, key=key, start=start, end=start + hours * H)


def test_events_file_reads_dates_lists_and_refuses_nonsense(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(
        "match_before_hours: 6\n"
        "events:\n"
        "  - {name: SVB, key: [topic:Financials, ticker:SIVB], start: 2023-03-09, end: 2023-03-11}\n"
        "  - {name: Other, key: 'ticker:*', start: '2023-03-12T10:00:00', end: 2023-03-13}\n"
    )
    parsed = load_events(path)
    assert parsed.match_before_hours == 6
    svb, other = parsed.events
    assert svb.start == T0 and svb.end == T0 + 48 * H  # a bare date is 00:00 UTC
    assert svb.key == ("topic:Financials", "ticker:SIVB")
    assert other.start == datetime(2023, 3, 12, 10, tzinfo=UTC)  # naive means UTC
    assert other.covers("ticker:FRC") and not other.covers("topic:Financials")
    path.write_text("- {name: Bare list, key: overall, start: 2023-01-01, end: 2023-01-02}\n")
    assert [e.name for e in load_events(path).events] == ["Bare list"]
    for bad in (
        "- {name: Backwards, key: overall, start: 2023-01-02, end: 2023-01-01}\n",
        "- {name: No key, start: 2023-01-01, end: 2023-01-02}\n",
        "events: [{name: x, key: overall, start: 2023-01-01, end: 2023-01-02, colour: red}]\n",
        "events: [unclosed\n",
    ):
        path.write_text(bad)
        with pytest.raises(EventsError, match=str(path.name)):
            load_events(path)


def test_hits_misses_false_alerts_and_lead_time() -> None:
    svb = event("SVB", ["topic:Financials", "ticker:SIVB"], T0, 48)
    fed = event("Fed surprise", "topic:Fed | Central Banks", T0 + 200 * H, 4)
    alerts = [
        alert("topic:Financials", T0 - 2 * H),  # early warning: inside match_before
        alert("topic:Financials", T0 - 2 * H, state="resolved"),  # not a second alert
        alert("ticker:SIVB", T0 + 5 * H),
        alert("topic:Financials", T0 - 30 * H),  # too early: a false alert on an event key
        alert("topic:Energy | Oil", T0 + 3 * H),  # no event there: false
        alert("topic:Financials", T0 + 49 * H),  # after the end: false
    ]
    card = score_events([svb, fed], alerts, match_before=timedelta(hours=24))
    hit, miss = card.outcomes
    assert hit.hit and [a.key for a in hit.alerts] == ["topic:Financials", "ticker:SIVB"]
    assert hit.first_alert_at == T0 - 2 * H and hit.lead_hours == pytest.approx(2.0)
    assert not miss.hit and miss.lead_hours is None and miss.first_alert_at is None
    assert (card.hits, card.misses, card.fired) == (1, 1, 5)
    assert sorted(a.updated_at for a in card.false_alerts) == [
        T0 - 30 * H,
        T0 + 3 * H,
        T0 + 49 * H,
    ]
    assert card.false_on_event_keys == 2


def test_a_late_alert_has_a_negative_lead_time() -> None:
    card = score_events(
        [event("SVB", "topic:Financials", T0, 48)], [alert("topic:Financials", T0 + 24 * H)]
    )
    assert card.outcomes[0].lead_hours == pytest.approx(-24.0)


def test_an_event_begins_with_its_first_negative_story_and_is_timed_from_it(
    tmp_path: Path,
) -> None:
    svb = KnownEvent(
        name="SVB", key=("ticker:SIVB",), start=T0, end=T0 + 48 * H, story="SVB|Silicon Valley"
    )
    negatives = [
        (T0 - 3 * H, "SVB warns on deposits"),  # before the event's start: not its first story
        (T0 + 20 * H, "Shares of SVB Financial fall more than 50%"),
        (T0 + 21 * H, "Silicon Valley Bank's struggles spread"),
        (T0 + 5 * H, "Oil falls"),  # another story
    ]
    found = first_stories([svb], negatives)
    assert found == {"SVB": T0 + 20 * H}

    card = score_events([svb], [alert("ticker:SIVB", T0 + 23 * H)], stories=found)
    outcome = card.outcomes[0]
    assert outcome.first_story_at == T0 + 20 * H
    assert outcome.lead_hours == pytest.approx(-3.0)  # three hours after its first story
    path = tmp_path / "events.yaml"
    path.write_text("- {name: x, key: overall, start: 2023-01-01, end: 2023-01-02, story: '('}\n")
    with pytest.raises(EventsError, match="regular expression"):
        load_events(path)


def test_the_alert_budget_is_alerts_per_week_of_the_feed() -> None:
    budget = alert_budget(26, (T0, T0 + timedelta(weeks=26)))
    assert budget["alerts_per_week"] == pytest.approx(1.0)
    assert budget["weeks"] == pytest.approx(26.0)
    assert alert_budget(3, None) == {}


@given(st.permutations(list(range(6))))
def test_the_alert_list_bytes_do_not_depend_on_arrival_order(order: list[int]) -> None:
    alerts = [
        alert("topic:Financials", T0),
        alert("topic:Financials", T0 + H, state="resolved"),
        alert("ticker:SIVB", T0),
        alert("overall", T0),
        alert("ticker:SIVB", T0 + 2 * H, state="resolved"),
        alert("topic:Markets", T0 - H),
    ]
    assert alert_lines([alerts[i] for i in order]) == alert_lines(alerts)


def test_report_files_hold_every_alert_and_event_and_escape_headlines(tmp_path: Path) -> None:
    alerts = [
        alert("topic:Financials", T0 + 3 * H, title=XSS),
        alert(
            "topic:Financials",
            T0 + 9 * H,
            "resolved",
            XSS,
            f"topic:Financials|{(T0 + 3 * H).isoformat()}",
        ),
        alert("ticker:ACME", T0 + 100 * H, title="Acme & Co warns"),
    ]
    events_path = tmp_path / "events.yaml"
    events_path.write_text(
        "events:\n"
        "  - {name: SVB <collapse>, key: topic:Financials, start: 2023-03-09, end: 2023-03-11}\n"
        "  - {name: Quiet, key: ticker:NONE, start: 2023-04-01, end: 2023-04-02}\n"
    )
    series = [
        {
            "key": "topic:Financials",
            "window_start": (T0 + d * 24 * H).isoformat(),
            "window_end": (T0 + (d + 1) * 24 * H).isoformat(),
            "count": 10 + d,
            "mean_score": -0.1 * d,
            "neg_share": 0.1 * d,
            "weighted_neg_share": 0.1 * d,
        }
        for d in range(3)
    ]
    report = ReportInput(
        run_id="r1",
        feed="feed.jsonl",
        alerts=alerts,
        series=series,
        series_window="1d",
        events=load_events(events_path),
        summary={"stories": 33, "seconds": 1.5},
    )
    path = write_report(report, tmp_path / "out")
    page = path.read_text(encoding="utf-8")
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Acme &amp; Co warns" in page
    assert "SVB &lt;collapse&gt;" in page and "Quiet" in page
    assert "plotly" in page.lower() and 'id="series"' in page
    out = tmp_path / "out"
    with (out / "alerts.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["key"], r["fired_at"], r["resolved_at"], r["headlines"]) for r in rows] == [
        ("topic:Financials", (T0 + 3 * H).isoformat(), (T0 + 9 * H).isoformat(), XSS),
        ("ticker:ACME", (T0 + 100 * H).isoformat(), "", "Acme & Co warns"),
    ]
    with (out / "events.csv").open(encoding="utf-8") as fh:
        events = {r["name"]: r for r in csv.DictReader(fh)}
    assert events["SVB <collapse>"]["result"] == "hit"
    assert float(events["SVB <collapse>"]["lead_hours"]) == pytest.approx(-3.0)
    assert events["Quiet"]["result"] == "miss" and events["Quiet"]["lead_hours"] == ""
    with (out / "false_alerts.csv").open(encoding="utf-8") as fh:
        assert [r["key"] for r in csv.DictReader(fh)] == ["ticker:ACME"]
    with (out / "series.csv").open(encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["hits"], summary["misses"], summary["false_alerts"]) == (1, 1, 1)
    assert summary["alert_events"] == 3 and summary["alerts_fired"] == 2
    assert (out / "alert_events.jsonl").read_bytes() == alert_lines(alerts)


def test_report_csv_cells_never_run_as_spreadsheet_formulas(tmp_path: Path) -> None:
    formula = '=HYPERLINK("http://evil.example","click")'
    alerts = [alert("topic:Financials", T0, title=formula), alert("ticker:ACME", T0, title="-1+2")]
    report = ReportInput(
        run_id="r1", feed="feed.jsonl", alerts=alerts, series=[], series_window="1d"
    )

    write_report(report, tmp_path / "out")

    with (tmp_path / "out" / "alerts.csv").open(encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    assert rows["topic:Financials"]["headlines"] == "'" + formula
    assert rows["ticker:ACME"]["headlines"] == "'-1+2"
    assert float(rows["ticker:ACME"]["zscore"]) == alerts[1].zscore  # numbers stay numbers


def test_report_without_events_or_alerts(tmp_path: Path) -> None:
    report = ReportInput(run_id="empty", feed="f", alerts=[], series=[], series_window="1d")
    page = write_report(report, tmp_path).read_text(encoding="utf-8")
    assert "No events file was given." in page and "Alerts fired (0)" in page
    assert (tmp_path / "alert_events.jsonl").read_bytes() == b""
