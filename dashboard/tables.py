"""Pure table builders: query frames in, the frames the pages show (and export) out."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from dashboard.safe import safe_url

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


def headlines_table(headlines: pd.DataFrame) -> pd.DataFrame:
    """Headlines for a dataframe (and its CSV): every feed field as plain text, and the link
    only when it is a plain http(s) URL."""
    if headlines.empty:
        return pd.DataFrame(columns=HEADLINE_TABLE_COLUMNS)
    return pd.DataFrame(
        {
            "Time (UTC)": headlines["published_at"].dt.tz_localize(None),
            "Source": headlines["source"],
            "Topic": headlines["topic"],
            "Sentiment": headlines["sentiment"],
            "Score": headlines["score"],
            "Title": headlines["title"],
            "Tickers": [", ".join(t) for t in headlines["tickers"]],
            "Top words": [", ".join(words) for words in headlines["top_tokens"]],
            "Link": [safe_url(u) for u in headlines["url"]],
        },
        columns=HEADLINE_TABLE_COLUMNS,
    )


def alerts_table(alerts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Key": alerts["key"],
            "State": alerts["state"],
            "Severity": alerts["severity"],
            "Neg share": alerts["neg_share"],
            "Baseline": alerts["baseline_mean"],
            "Z-score": alerts["zscore"],
            "Window (UTC)": [
                f"{start:%Y-%m-%d %H:%M} – {end:%H:%M}"
                for start, end in zip(alerts["window_start"], alerts["window_end"], strict=True)
            ],
            "Acknowledged by": alerts["acked_by"].fillna(""),
        }
    )


def silences_table(silences: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Match": silences["matcher"],
            "Severity": silences["severity"].fillna("any"),
            "Until (UTC)": silences["ends_at"].dt.tz_localize(None),
            "By": silences["created_by"],
            "Comment": silences["comment"],
        }
    )


def backtests_table(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": runs["id"],
            "Status": runs["status"],
            "Started (UTC)": runs["started_at"].dt.tz_localize(None),
            "Finished (UTC)": runs["finished_at"].dt.tz_localize(None),
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
