"""Pure figure builders: DataFrames from ``dashboard.queries`` in, plotly Figures out.

No I/O and no Streamlit, so each chart is unit-tested on its own. Every builder returns a figure
with a "no data yet" annotation when there is nothing to draw, so a new store still renders.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

NO_DATA = "no data yet"
TOPIC_PREFIX = "topic:"
SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e"}
SCORE_RANGE = (-1.05, 1.05)  # scores lie in [-1, 1]; the margin keeps extreme points visible


def empty_figure(title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16}
    )
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def sentiment_trend(
    windows: pd.DataFrame, alerts: pd.DataFrame | None = None, key: str = "overall"
) -> go.Figure:
    """Mean score (left axis) and negative share (right axis) per window of one series, with a
    marker and a dotted vertical line at the start of each alert window on that series."""
    title = f"Sentiment: {key}"
    series = _series(windows, key)
    if series.empty:
        return empty_figure(title)

    fig = go.Figure()
    fig.add_scatter(
        x=series["window_start"],
        y=series["mean_score"],
        name="mean score",
        mode="lines+markers",
        hovertemplate="%{x}<br>mean score %{y:.2f}<extra></extra>",
    )
    fig.add_scatter(
        x=series["window_start"],
        y=series["neg_share"],
        name="negative share",
        mode="lines",
        yaxis="y2",
        line={"dash": "dash"},
        hovertemplate="%{x}<br>negative %{y:.0%}<extra></extra>",
    )

    hits = _alerts_in_range(alerts, key, series["window_start"])
    if not hits.empty:
        colors = [SEVERITY_COLORS.get(s, "#7f7f7f") for s in hits["severity"]]
        fig.add_scatter(
            x=hits["window_start"],
            y=hits["neg_share"],
            name="alerts",
            mode="markers",
            yaxis="y2",
            marker={"symbol": "triangle-up", "size": 13, "color": colors},
            customdata=hits[["severity", "state", "zscore"]].to_numpy(),
            hovertemplate=(
                "%{x}<br>%{customdata[0]} alert (%{customdata[1]})<br>"
                "negative %{y:.0%}, z %{customdata[2]:.1f}<extra></extra>"
            ),
        )
        for start, color in zip(hits["window_start"], colors, strict=True):
            fig.add_vline(x=start, line={"dash": "dot", "width": 1, "color": color})

    fig.update_layout(
        title=title,
        yaxis={"title": "mean score", "range": SCORE_RANGE},
        yaxis2={
            "title": "negative share",
            "overlaying": "y",
            "side": "right",
            "range": [0, 1],
            "tickvals": [0, 0.25, 0.5, 0.75, 1],
            "tickformat": ".0%",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.2},
        hovermode="closest",
    )
    return fig


def topic_lines(windows: pd.DataFrame, topics: Iterable[str] | None = None) -> go.Figure:
    """One mean-score line per topic (``topic:<name>`` series), limited to ``topics`` if given."""
    title = "Mean score by topic"
    rows = windows[windows["key"].str.startswith(TOPIC_PREFIX)] if not windows.empty else windows
    if rows.empty:
        return empty_figure(title)
    names = rows["key"].str.removeprefix(TOPIC_PREFIX)
    wanted = sorted(set(names) if topics is None else set(names) & set(topics))
    if not wanted:
        return empty_figure(title)

    fig = go.Figure()
    for name in wanted:
        series = rows[names == name].sort_values("window_start")
        fig.add_scatter(
            x=series["window_start"],
            y=series["mean_score"],
            name=name,
            mode="lines+markers",
            customdata=series["count"],
            hovertemplate="%{x}<br>mean score %{y:.2f} (%{customdata} items)",
        )
    fig.update_layout(
        title=title,
        yaxis={"title": "mean score", "range": SCORE_RANGE},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def volume_bars(windows: pd.DataFrame, key: str = "overall") -> go.Figure:
    """Items per window of one series."""
    title = f"Volume: {key}"
    series = _series(windows, key)
    if series.empty:
        return empty_figure(title)
    fig = go.Figure()
    fig.add_bar(
        x=series["window_start"],
        y=series["count"],
        name="items",
        hovertemplate="%{x}<br>%{y} items<extra></extra>",
    )
    fig.update_layout(title=title, yaxis={"title": "items per window"}, bargap=0.1)
    return fig


def topic_names(windows: pd.DataFrame) -> list[str]:
    """The topics present in a frame of windows, sorted by total volume, busiest first."""
    if windows.empty:
        return []
    rows = windows[windows["key"].str.startswith(TOPIC_PREFIX)]
    totals = rows.groupby(rows["key"].str.removeprefix(TOPIC_PREFIX))["count"].sum()
    return sorted(totals.index, key=lambda name: (-totals[name], name))


def _series(windows: pd.DataFrame, key: str) -> pd.DataFrame:
    if windows.empty:
        return windows
    return windows[windows["key"] == key].sort_values("window_start")


def _alerts_in_range(alerts: pd.DataFrame | None, key: str, starts: pd.Series) -> pd.DataFrame:
    """Alerts on ``key`` whose window lies within the plotted range, so markers never stretch
    the time axis beyond the data."""
    if alerts is None or alerts.empty:
        return pd.DataFrame()
    hits = alerts[
        (alerts["key"] == key)
        & (alerts["window_start"] >= starts.min())
        & (alerts["window_start"] <= starts.max())
    ]
    return hits.sort_values("window_start")
