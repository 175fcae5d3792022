"""Pure table builders: query frames in, the frames the pages show (and export) out.

Times are shown on the wall clock of the dashboard's time zone (``tz``, an IANA name; the
store's times are UTC), and each time column says which zone it is in: "Time (UTC)".
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from finsent.core.safety import strict_web_link


def zoned(label: str, tz: str = "UTC") -> str:
    """A time column's label with its zone: ``Time (Europe/London)``."""
    return f"{label} ({tz})"


def local_times(values: pd.Series, tz: str = "UTC") -> pd.Series:
    """UTC times (aware, or naive meaning UTC) as naive wall-clock times in ``tz``."""
    times = pd.to_datetime(values, utc=True)
    return times.dt.tz_convert(tz).dt.tz_localize(None)


HEADLINE_TABLE_COLUMNS = [
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


def headline_table_columns(tz: str = "UTC") -> list[str]:
    return [zoned("Time", tz), *HEADLINE_TABLE_COLUMNS[1:]]


def headlines_table(headlines: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """Headlines for a dataframe (and its CSV): every feed field as plain text, and the link
    only when it is a plain http(s) URL."""
    columns = headline_table_columns(tz)
    if headlines.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            zoned("Time", tz): local_times(headlines["published_at"], tz),
            "Source": headlines["source"],
            "Topic": headlines["topic"],
            "Sentiment": headlines["sentiment"],
            "Score": headlines["score"],
            "Title": headlines["title"],
            "Tickers": [", ".join(t) for t in headlines["tickers"]],
            "Top words": [", ".join(words) for words in headlines["top_tokens"]],
            "Link": [strict_web_link(u) for u in headlines["url"]],
        },
        columns=columns,
    )


def alerts_table(
    alerts: pd.DataFrame, tz: str = "UTC", watchlist: frozenset[str] | None = None
) -> pd.DataFrame:
    """One row per alert; with a ``watchlist`` (its series keys), a column marking the
    alerts on it."""
    starts = local_times(alerts["window_start"], tz)
    ends = local_times(alerts["window_end"], tz)
    table = pd.DataFrame(
        {
            "Key": alerts["key"],
            "State": alerts["state"],
            "Severity": alerts["severity"],
            "Neg share": alerts["neg_share"],
            "Baseline": alerts["baseline_mean"],
            "Z-score": alerts["zscore"],
            zoned("Window", tz): [
                f"{start:%Y-%m-%d %H:%M} – {end:%H:%M}"
                for start, end in zip(starts, ends, strict=True)
            ],
            "Acknowledged by": alerts["acked_by"].fillna(""),
        }
    )
    if watchlist is not None:
        table.insert(1, "Watchlist", alerts["key"].isin(watchlist).to_numpy())
    return table


def silences_table(silences: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Match": silences["matcher"],
            "Severity": silences["severity"].fillna("any"),
            zoned("Until", tz): local_times(silences["ends_at"], tz),
            "By": silences["created_by"],
            "Comment": silences["comment"],
        }
    )


def backtests_table(runs: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": runs["id"],
            "Status": runs["status"],
            zoned("Started", tz): local_times(runs["started_at"], tz),
            zoned("Finished", tz): local_times(runs["finished_at"], tz),
            "Feed": runs["feed"],
            "Alerts": runs["alert_count"].astype("Int64"),
            "Params": [_params_text(p) for p in runs["params"]],
            "Report": runs["report_path"].fillna(""),
        }
    )


def _params_text(params: Any) -> str:
    if not params:
        return ""
    if isinstance(params, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return json.dumps(params)


# -- a backtest's report folder (finsent/backtest_report.py writes it; read here as text) ------

SUMMARY_METRICS = (
    ("Stories", "stories"),
    ("Alerts fired", "alerts_fired"),
    ("Hits", "hits"),
    ("Misses", "misses"),
    ("False alerts", "false_alerts"),
    ("Seconds", "seconds"),
)


def backtest_summary(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's headline counts as (label, text); anything not a number reads "—", so no
    text from the file reaches a metric."""
    shown = []
    for label, name in SUMMARY_METRICS:
        value = summary.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = "—"
        elif name == "seconds":
            text = f"{value:,.1f}"
        else:
            text = f"{value:,.0f}"
        shown.append((label, text))
    return shown


def backtest_events_table(events: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """events.csv: each known event, hit or missed, with its first alert and lead time."""
    events = _text_columns(
        events, ("name", "key", "start", "end", "result", "first_alert_at", "lead_hours", "alerts")
    )
    return pd.DataFrame(
        {
            "Event": events["name"],
            "Series": events["key"],
            "Result": events["result"],
            zoned("First alert", tz): _times(events["first_alert_at"], tz),
            "Lead (h)": pd.to_numeric(events["lead_hours"], errors="coerce"),
            "Alerts": _counts(events["alerts"]),
            zoned("Start", tz): _times(events["start"], tz),
            zoned("End", tz): _times(events["end"], tz),
        }
    )


def backtest_alerts_table(alerts: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """alerts.csv: every alert the run fired, its evidence and the headlines it quoted."""
    alerts = _text_columns(
        alerts,
        ("fired_at", "window_start", "key", "severity", "zscore", "neg_share", "count")
        + ("resolved_at", "headlines", "alert_id"),
    )
    return pd.DataFrame(
        {
            zoned("Fired", tz): _times(alerts["fired_at"], tz),
            "Key": alerts["key"],
            "Severity": alerts["severity"],
            "Z-score": pd.to_numeric(alerts["zscore"], errors="coerce"),
            "Neg share": pd.to_numeric(alerts["neg_share"], errors="coerce"),
            "Stories": _counts(alerts["count"]),
            zoned("Window", tz): _times(alerts["window_start"], tz),
            zoned("Resolved", tz): _times(alerts["resolved_at"], tz),
            "Headlines": alerts["headlines"],
            "Alert": alerts["alert_id"],
        }
    )


def _text_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    # An older or hand-edited file may lack a column: it shows empty rather than failing.
    return frame.reindex(columns=list(columns), fill_value="").fillna("").astype(str)


def _counts(values: pd.Series) -> pd.Series:
    # A count that is not a whole number shows as none, rather than failing the cast.
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.where(numbers == numbers.round()).astype("Int64")


def _times(values: pd.Series, tz: str = "UTC") -> pd.Series:
    # The files hold ISO 8601 in UTC; an empty or odd value shows as no time.
    times = pd.to_datetime(values.where(values != ""), utc=True, errors="coerce", format="ISO8601")
    return times.dt.tz_convert(tz).dt.tz_localize(None)
