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


# -- the Models page ------------------------------------------------------------------------

NOT_REGISTERED = "not registered"


def registry_version(stored: str) -> str:
    """The registry's name of a stored ``model_version``: the scorers add their backend after a
    "/" (``finsent-attn-1+5021b24b/onnx-int8``), the registry names the artifact alone."""
    return str(stored).split("/", 1)[0]


def gate_verdict(report: Any) -> tuple[str, str]:
    """(passed | refused | "", its reasons in a line) from a version's gate report."""
    if not isinstance(report, dict):
        return "", ""
    passed = report.get("passed")
    verdict = "" if passed is None else ("passed" if passed else "refused")
    reasons = report.get("reasons") or ()
    if isinstance(reasons, str):
        reasons = (reasons,)
    return verdict, "; ".join(str(r) for r in reasons)


def models_table(
    listing: list[dict[str, Any]], usage: pd.DataFrame, tz: str = "UTC"
) -> pd.DataFrame:
    """One row per model version: the registry's (``ModelRegistry.listing``), then any other
    version that scored stored stories (a lexicon run, a model no longer registered); with
    the stories each scored (``queries.model_usage``, per registry version) and the first and
    last of them."""
    scored: dict[str, dict[str, Any]] = {}
    for row in usage.to_dict("records"):
        name = registry_version(row["model_version"])
        seen = scored.setdefault(name, {"stories": 0, "first": row["first"], "last": row["last"]})
        seen["stories"] += int(row["stories"])
        seen["first"] = min(seen["first"], row["first"])
        seen["last"] = max(seen["last"], row["last"])
    rows = []
    for model in listing:
        verdict, reasons = gate_verdict(model.get("report"))
        rows.append(
            {
                "version": model["version"],
                "status": model.get("status", ""),
                "active": bool(model.get("active")),
                "promoted_at": model.get("promoted_at"),
                "created_at": model.get("created_at"),
                "parent": model.get("parent") or "",
                "corrections": model.get("corrections"),
                "gate": verdict,
                "reasons": reasons,
                **scored.pop(model["version"], {}),
            }
        )
    rows += [
        {"version": name, "status": NOT_REGISTERED, "active": False, **seen}
        for name, seen in sorted(scored.items())
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "version", "status", "active", "promoted_at", "created_at", "parent",
            "corrections", "gate", "reasons", "stories", "first", "last",
        ],
    )  # fmt: skip
    return pd.DataFrame(
        {
            "Version": frame["version"],
            "Status": frame["status"],
            "Active": frame["active"].astype(bool),
            zoned("Promoted", tz): local_times(frame["promoted_at"], tz),
            zoned("Created", tz): local_times(frame["created_at"], tz),
            "Parent": frame["parent"].fillna(""),
            "Corrections": frame["corrections"].astype("Int64"),
            "Stories scored": frame["stories"].fillna(0).astype("int64"),
            zoned("First story", tz): local_times(frame["first"], tz),
            zoned("Last story", tz): local_times(frame["last"], tz),
            "Gate": frame["gate"].fillna(""),
            "Reasons": frame["reasons"].fillna(""),  # long: last, so it never hides the rest
        }
    )


def promotions_table(promotions: list[dict[str, Any]], tz: str = "UTC") -> pd.DataFrame:
    """Promotions and rollbacks, newest first; a version of None is the default model."""
    frame = pd.DataFrame(
        promotions, columns=["version", "previous", "kind", "at", "by", "reason"]
    ).iloc[::-1]
    return pd.DataFrame(
        {
            zoned("At", tz): local_times(frame["at"], tz),
            "Kind": frame["kind"],
            "To": frame["version"].fillna("the default"),
            "From": frame["previous"].fillna("the default"),
            "By": frame["by"],
            "Reason": frame["reason"],
        }
    ).reset_index(drop=True)


def review_table(queue: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """The review queue (``review.rank_for_review``) as a table: feed text as plain text, the
    link only when it is a plain http(s) URL."""
    return pd.DataFrame(
        {
            "Review score": queue["review_score"],
            "Why": queue["why"],
            zoned("Time", tz): local_times(queue["published_at"], tz),
            "Source": queue["source"],
            "Title": queue["title"],
            "Sentiment": queue["sentiment"],
            "Confidence": queue["confidence"],
            "Topic": queue["topic"],
            "Link": [strict_web_link(u) for u in queue["url"]],
        }
    )
