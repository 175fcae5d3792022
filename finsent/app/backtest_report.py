"""A backtest's report: its alerts, the sentiment series per topic, and a score against known
events. Matching is pure (a function of the events and the alerts); writing is at the edge.

Files in the report folder:
    report.html        Plotly charts and every table, one self-contained file
    alerts.csv         every alert that fired: time, key, severity, evidence, headlines
    alert_events.jsonl every lifecycle event (pending, firing, resolved) as its versioned JSON,
                       in a canonical order: the byte-comparable alert list of the run
    events.csv         each known event: hit or miss, its first story, first alert, delay
    false_alerts.csv   alerts that fired on no known event
    series.csv         the sentiment series of every topic
    summary.json       counts, timings and the run's parameters
"""

from __future__ import annotations

import csv
import fnmatch
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from finsent.core.records import Alert, encode
from finsent.core.safety import spreadsheet_cell
from finsent.core.vocabulary import STATE_ORDER

DEFAULT_MATCH_BEFORE = timedelta(hours=24)


class EventsError(ValueError):
    pass


class KnownEvent(BaseModel):
    """A real-world event the alerts should catch: on which series keys, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    # Series keys or glob patterns (topic:Financials, ticker:SIVB, ticker:*); a list means any.
    key: tuple[str, ...]
    start: datetime
    end: datetime
    note: str = ""
    # A pattern (a case-insensitive regular expression) of the headlines about it: the event
    # starts with its first negative story from ``start`` on, not at midnight.
    story: str | None = None

    @field_validator("story")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"story: not a regular expression ({exc})") from None
        return value

    @field_validator("key", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # A bare date is that day from 00:00 UTC: YAML gives it as a date, not a datetime.
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, time(0), UTC)
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # Times without a zone are UTC, like every time in finsent.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def covers(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.key)

    def is_about(self, title: str) -> bool:
        return self.story is not None and re.search(self.story, title, re.IGNORECASE) is not None


def first_stories(
    events: Sequence[KnownEvent], negatives: Iterable[tuple[datetime, str]]
) -> dict[str, datetime]:
    """Each event's first negative story (by its ``story`` pattern) between its start and end.
    ``negatives``: (published at, title) of the run's negative stories."""
    found: dict[str, datetime] = {}
    for at, title in sorted(negatives):
        for event in events:
            if event.name not in found and event.start <= at <= event.end and event.is_about(title):
                found[event.name] = at
    return found


class EventsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How long before an event's start an alert still counts as catching it.
    match_before_hours: float = Field(default=24.0, ge=0)
    events: list[KnownEvent]


def load_events(path: Path) -> EventsFile:
    """The events YAML: ``events: [{name, key, start, end, note}]``, or a bare list of them."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EventsError(f"{path}: {exc}") from exc
    if isinstance(data, list):
        data = {"events": data}
    try:
        parsed = EventsFile.model_validate(data)
    except ValueError as exc:
        raise EventsError(f"{path}: {exc}") from exc
    for event in parsed.events:
        if event.end <= event.start:
            raise EventsError(f"{path}: event {event.name!r} ends before it starts")
    return parsed


def canonical_order(alerts: Iterable[Alert]) -> list[Alert]:
    """Alert events in event-time order, ties broken by key, lifecycle state and id."""
    return sorted(alerts, key=lambda a: (a.updated_at, a.key, STATE_ORDER[a.state], a.id))


def alert_lines(alerts: Sequence[Alert]) -> bytes:
    """The run's alert list as bytes: one versioned JSON record per line, canonical order."""
    return b"".join(encode(a) + b"\n" for a in canonical_order(alerts))


@dataclass(frozen=True)
class EventOutcome:
    event: KnownEvent
    alerts: tuple[Alert, ...]  # firing alerts that caught it, earliest first
    first_story_at: datetime | None = None  # its first negative story, where it has a pattern

    @property
    def hit(self) -> bool:
        return bool(self.alerts)

    @property
    def first_alert_at(self) -> datetime | None:
        return self.alerts[0].updated_at if self.alerts else None

    @property
    def began_at(self) -> datetime:
        """When the event began: its first story, else its start."""
        return self.first_story_at or self.event.start

    @property
    def lead_hours(self) -> float | None:
        """Hours from the first alert to when the event began: positive is early warning,
        negative is how long after its first story the alert came."""
        first = self.first_alert_at
        return None if first is None else (self.began_at - first).total_seconds() / 3600


@dataclass(frozen=True)
class Scorecard:
    outcomes: tuple[EventOutcome, ...]
    false_alerts: tuple[Alert, ...]  # fired on no event's key and period
    fired: int
    match_before: timedelta = DEFAULT_MATCH_BEFORE

    @property
    def hits(self) -> int:
        return sum(o.hit for o in self.outcomes)

    @property
    def misses(self) -> int:
        return len(self.outcomes) - self.hits

    @property
    def false_on_event_keys(self) -> int:
        """False alerts on the keys the events watch: the ones an events file can judge."""
        keys = [o.event for o in self.outcomes]
        return sum(1 for a in self.false_alerts if any(e.covers(a.key) for e in keys))


def fired_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """The firing event of each alert, in canonical order."""
    return [a for a in canonical_order(alerts) if a.state == "firing"]


def score_events(
    events: Sequence[KnownEvent],
    alerts: Iterable[Alert],
    match_before: timedelta = DEFAULT_MATCH_BEFORE,
    stories: dict[str, datetime] | None = None,
) -> Scorecard:
    """Hits, misses, lead times and false alerts. An alert catches an event when it fires on
    one of the event's keys between ``match_before`` ahead of its start and its end; the time
    of an alert is the end of the window that fired it (when, in event time, it was known)."""
    fired = fired_alerts(alerts)
    outcomes = []
    caught: set[str] = set()
    for event in events:
        matching = tuple(
            a
            for a in fired
            if event.covers(a.key) and event.start - match_before <= a.updated_at <= event.end
        )
        caught.update(a.id for a in matching)
        outcomes.append(EventOutcome(event, matching, (stories or {}).get(event.name)))
    false = tuple(a for a in fired if a.id not in caught)
    return Scorecard(tuple(outcomes), false, len(fired), match_before)


# -- files --------------------------------------------------------------------------------------

ALERT_COLUMNS = (
    "fired_at",
    "window_start",
    "key",
    "severity",
    "zscore",
    "neg_share",
    "weighted_neg_share",
    "count",
    "baseline_mean",
    "mean_score",
    "resolved_at",
    "headlines",
    "alert_id",
)
EVENT_COLUMNS = (
    "name",
    "key",
    "start",
    "end",
    "first_story_at",
    "result",
    "first_alert_at",
    "lead_hours",
    "alerts",
)
SERIES_COLUMNS = (
    "key",
    "window_start",
    "window_end",
    "count",
    "mean_score",
    "neg_share",
    "weighted_neg_share",
)


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def alert_rows(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """One row per fired alert, with when it resolved (if it did within the run)."""
    resolved = {a.id: a.updated_at for a in alerts if a.state == "resolved"}
    return [
        {
            "fired_at": _iso(a.updated_at),
            "window_start": _iso(a.window_start),
            "key": a.key,
            "severity": a.severity,
            "zscore": a.zscore,
            "neg_share": a.neg_share,
            "weighted_neg_share": a.weighted_neg_share,
            "count": a.count,
            "baseline_mean": a.baseline_mean,
            "mean_score": a.mean_score,
            "resolved_at": _iso(resolved.get(a.id)),
            # The evidence: the negative stories that drove it, most novel first.
            "headlines": " | ".join(h.title for h in a.headlines[:3]),
            "alert_id": a.id,
        }
        for a in fired_alerts(alerts)
    ]


def event_rows(card: Scorecard) -> list[dict[str, Any]]:
    return [
        {
            "name": o.event.name,
            "key": ", ".join(o.event.key),
            "start": _iso(o.event.start),
            "end": _iso(o.event.end),
            "first_story_at": _iso(o.first_story_at),
            "result": "hit" if o.hit else "miss",
            "first_alert_at": _iso(o.first_alert_at),
            "lead_hours": "" if o.lead_hours is None else round(o.lead_hours, 2),
            "alerts": len(o.alerts),
        }
        for o in card.outcomes
    ]


def alert_budget(fired: int, period: tuple[datetime, datetime] | None) -> dict[str, Any]:
    """Alerts per week over the feed's period: what an analyst's inbox gets."""
    if period is None:
        return {}
    weeks = max((period[1] - period[0]).total_seconds() / (7 * 86400), 1 / 7)
    return {
        "period_from": _iso(period[0]),
        "period_to": _iso(period[1]),
        "weeks": round(weeks, 2),
        "alerts_per_week": round(fired / weeks, 2),
    }


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            # Keys and headlines come from feeds: a cell must never run as a formula.
            writer.writerow(
                {k: "" if row.get(k) is None else spreadsheet_cell(row[k]) for k in columns}
            )


@dataclass
class ReportInput:
    run_id: str
    feed: str
    alerts: list[Alert]
    series: list[dict[str, Any]]  # rows with SERIES_COLUMNS, the topic series
    series_window: str  # e.g. "1d"
    events: EventsFile | None = None
    first_stories: dict[str, datetime] = field(default_factory=dict)  # event name → its first
    period: tuple[datetime, datetime] | None = None  # the feed's first and last story
    summary: dict[str, Any] = field(default_factory=dict)  # counts, timings, parameters


def write_report(report: ReportInput, out_dir: Path) -> Path:
    """Write every report file into ``out_dir``; returns the HTML report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    match_before = (
        timedelta(hours=report.events.match_before_hours) if report.events else DEFAULT_MATCH_BEFORE
    )
    card = score_events(
        report.events.events if report.events else [],
        report.alerts,
        match_before,
        report.first_stories,
    )
    rows = alert_rows(report.alerts)
    (out_dir / "alert_events.jsonl").write_bytes(alert_lines(report.alerts))
    _write_csv(out_dir / "alerts.csv", ALERT_COLUMNS, rows)
    _write_csv(out_dir / "events.csv", EVENT_COLUMNS, event_rows(card))
    false_ids = {a.id for a in card.false_alerts}
    _write_csv(
        out_dir / "false_alerts.csv", ALERT_COLUMNS, [r for r in rows if r["alert_id"] in false_ids]
    )
    _write_csv(out_dir / "series.csv", SERIES_COLUMNS, report.series)
    summary = {
        **report.summary,
        "run_id": report.run_id,
        "feed": report.feed,
        "alert_events": len(report.alerts),
        "alerts_fired": card.fired,
        "events": len(card.outcomes),
        "hits": card.hits,
        "misses": card.misses,
        "false_alerts": len(card.false_alerts),
        "false_alerts_on_event_keys": card.false_on_event_keys,
        "match_before_hours": match_before.total_seconds() / 3600,
        **alert_budget(card.fired, report.period),
    }
    (out_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    path = out_dir / "report.html"
    path.write_text(render_html(report, card, rows, summary), encoding="utf-8")
    return path


# -- HTML -------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.hit { background: #e4f4e4; } td.miss { background: #fbe4e4; }
#alerts td:nth-child(12), #false-alerts td:nth-child(12) { min-width: 28em; }
.figures { display: flex; gap: 2rem; flex-wrap: wrap; }
"""


def _table(columns: Sequence[str], rows: Sequence[dict[str, Any]], table_id: str) -> str:
    """An HTML table; every cell is escaped, since headlines come from the feed."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = "" if row.get(c) is None else str(row[c])
            css = f' class="{value}"' if c == "result" and value in ("hit", "miss") else ""
            cells.append(f"<td{css}>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figure(report: ReportInput, card: Scorecard) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=(
            f"Mean sentiment score per topic ({report.series_window} windows)",
            f"Negative share per topic ({report.series_window} windows)",
        ),
    )
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in report.series:
        by_key.setdefault(row["key"], []).append(row)
    # Twenty topics at once are unreadable: show those that alerted or that an event watches;
    # the rest are a click on the legend away.
    shown = {a.key for a in fired_alerts(report.alerts)} | {
        key for key in by_key if any(o.event.covers(key) for o in card.outcomes)
    }
    for key in sorted(by_key):
        points = sorted(by_key[key], key=lambda r: r["window_start"])
        name = key.removeprefix("topic:")
        x = [p["window_start"] for p in points]
        counts = [p["count"] for p in points]
        for row_no, column in ((1, "mean_score"), (2, "neg_share")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[p[column] for p in points],
                    customdata=counts,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=row_no == 1,
                    visible=True if not shown or key in shown else "legendonly",
                    hovertemplate=f"{html.escape(name)}<br>%{{x}}<br>{column} %{{y:.3f}}"
                    "<br>stories %{customdata}<extra></extra>",
                ),
                row=row_no,
                col=1,
            )
    fired = fired_alerts(report.alerts)
    if fired:
        fig.add_trace(
            go.Scatter(
                x=[a.updated_at for a in fired],
                y=[
                    a.weighted_neg_share if a.weighted_neg_share is not None else a.neg_share
                    for a in fired
                ],
                mode="markers",
                marker={"symbol": "x", "size": 9, "color": "#c0392b"},
                name="alerts fired",
                text=[html.escape(f"{a.key} · {a.severity} · z={a.zscore}") for a in fired],
                hovertemplate="%{text}<br>%{x}<br>negative share %{y:.2f}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    for outcome in card.outcomes:
        event = outcome.event
        label = {
            "annotation_text": html.escape(event.name),
            "annotation_position": "top left",
            "annotation_textangle": -90,
            "annotation_font_size": 10,
        }
        for row_no in (1, 2):  # the name once, on the upper chart
            fig.add_vrect(
                x0=event.start,
                x1=event.end,
                fillcolor="#2e86c1" if outcome.hit else "#e67e22",
                opacity=0.15,
                line_width=0,
                row=row_no,
                col=1,
                **(label if row_no == 1 else {}),
            )
    fig.update_layout(height=760, margin={"t": 60, "l": 50, "r": 20, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id="series")


def render_html(
    report: ReportInput, card: Scorecard, rows: list[dict[str, Any]], summary: dict[str, Any]
) -> str:
    try:
        figure = _figure(report, card)
    except ImportError:  # plotly is in the dashboard extra; the tables still tell it all
        figure = "<p>Install finsent[dashboard] (plotly) for the charts.</p>"
    facts = [
        ("Run", report.run_id),
        ("Feed", report.feed),
        ("Stories scored", summary.get("stories")),
        ("Alerts fired", card.fired),
        ("Alerts per week", summary.get("alerts_per_week", "")),
        ("Known events", len(card.outcomes)),
        ("Hits / misses", f"{card.hits} / {card.misses}"),
        (
            "False alerts (all keys / on event keys)",
            f"{len(card.false_alerts)} / {card.false_on_event_keys}",
        ),
        ("Wall time (s)", summary.get("seconds")),
    ]
    facts_rows = [{"what": k, "value": v} for k, v in facts]
    false_ids = {a.id for a in card.false_alerts}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>finsent backtest {html.escape(report.run_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Backtest {html.escape(report.run_id)}</h1>",
        _table(("what", "value"), facts_rows, "summary"),
        "<h2>Known events</h2>",
        _table(EVENT_COLUMNS, event_rows(card), "events")
        if card.outcomes
        else "<p>No events file was given.</p>",
        "<h2>Sentiment per topic</h2>",
        figure,
        f"<h2>Alerts fired ({card.fired})</h2>",
        _table(ALERT_COLUMNS, rows, "alerts"),
        f"<h2>False alerts ({len(card.false_alerts)})</h2>",
        "<p>Fired on no known event's keys and period.</p>",
        _table(ALERT_COLUMNS, [r for r in rows if r["alert_id"] in false_ids], "false-alerts"),
        "</body></html>",
    ]
    return "\n".join(parts)
