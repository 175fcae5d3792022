"""Pure figure builders: DataFrames from ``dashboard.queries`` in, plotly Figures out.

No I/O and no Streamlit, so each chart is unit-tested on its own. Every builder returns a figure
with a "no data yet" annotation when there is nothing to draw, so a new store still renders.
Feed text reaches a figure only as data (hover text, category labels), which plotly draws as
text; titles and templates here are our own.

The builders draw UTC; ``in_time_zone`` moves a finished figure's time axis to the dashboard's
zone for display (plotly draws a time as the wall clock it is given).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from finsent.core.vocabulary import STATE_ORDER

NO_DATA = "no data yet"
TOPIC_PREFIX = "topic:"
SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e"}
STATE_COLORS = {"pending": "#f2b134", "firing": "#d62728", "resolved": "#2ca02c"}
BAND_COLOR = "rgba(31, 119, 180, 0.15)"
SCORE_RANGE = (-1.05, 1.05)  # scores lie in [-1, 1]; the margin keeps extreme points visible
SHARE_AXIS = {
    "title": "negative share",
    "range": [0, 1],
    "tickvals": [0, 0.25, 0.5, 0.75, 1],
    "tickformat": ".0%",
}
NEG_SCALE = [[0.0, "#f7fbff"], [0.5, "#fdae6b"], [1.0, "#a50f15"]]  # white → orange → dark red


def empty_figure(title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16}
    )
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


# -- baseline -------------------------------------------------------------------------------


def baseline_band(
    shares: Sequence[float],
    span: int = 24,
    k: float = 2.0,
    learn: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """The EWMA baseline of a negative-share series and a band of ``k`` standard deviations:
    each window is compared with the baseline of the windows before it, and only windows
    marked in ``learn`` (default: all) update the baseline. A reading aid for the chart; the
    alert detector judges counts of negative stories at several scales (alerts/detector.py).

    Columns ``mean``, ``lower``, ``upper`` (clipped to [0, 1]), one row per share; NaN where
    there is no history yet (the first window).
    """
    if learn is not None and len(learn) != len(shares):
        raise ValueError("learn needs one flag per share")
    rows: list[tuple[float, float, float]] = []
    seen, mean, var = 0, 0.0, 0.0
    for i, share in enumerate(shares):
        if seen == 0:
            rows.append((math.nan, math.nan, math.nan))
        else:
            std = math.sqrt(max(var, 0.0))
            rows.append((mean, max(mean - k * std, 0.0), min(mean + k * std, 1.0)))
        if learn is not None and not learn[i]:
            continue
        if seen == 0:
            mean, var = float(share), 0.0
        else:
            # Early on, weigh windows equally (a running mean) rather than trusting the first.
            alpha = max(2.0 / (span + 1), 1.0 / (seen + 1))
            delta = float(share) - mean
            mean += alpha * delta
            var = (1 - alpha) * (var + alpha * delta * delta)
        seen += 1
    return pd.DataFrame(rows, columns=["mean", "lower", "upper"])


# -- trends ---------------------------------------------------------------------------------


def sentiment_trend(
    windows: pd.DataFrame,
    alerts: pd.DataFrame | None = None,
    key: str = "overall",
    *,
    span: int = 24,
    band_k: float = 2.0,
    title: str | None = None,
) -> go.Figure:
    """Mean score (left axis) and negative share (right axis) per window of one series, with
    the negative share's EWMA baseline band, and a marker and a dotted vertical line at the
    start of each alert window on that series."""
    title = title or f"Sentiment: {_text(key)}"
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
    alerting = set(hits["window_start"]) if not hits.empty else set()
    band = baseline_band(
        series["neg_share"].tolist(),
        span=span,
        k=band_k,
        learn=[start not in alerting for start in series["window_start"]],
    )
    if band["mean"].notna().sum() >= 1:
        _add_band(fig, series["window_start"], band, yaxis="y2")

    if not hits.empty:
        colors = [SEVERITY_COLORS.get(s, "#7f7f7f") for s in hits["severity"]]
        custom = hits.reindex(columns=["severity", "state", "zscore", "baseline_mean"])
        fig.add_scatter(
            x=hits["window_start"],
            y=hits["neg_share"],
            name="alerts",
            mode="markers",
            yaxis="y2",
            marker={"symbol": "triangle-up", "size": 13, "color": colors},
            customdata=custom.to_numpy(),
            hovertemplate=(
                "%{x}<br>%{customdata[0]} alert (%{customdata[1]})<br>"
                "negative %{y:.0%} against %{customdata[3]:.0%}, z %{customdata[2]:.1f}"
                "<extra></extra>"
            ),
        )
        for start, color in zip(hits["window_start"], colors, strict=True):
            fig.add_vline(x=start, line={"dash": "dot", "width": 1, "color": color})

    fig.update_layout(
        title=title,
        yaxis={"title": "mean score", "range": SCORE_RANGE},
        yaxis2={**SHARE_AXIS, "overlaying": "y", "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
        hovermode="closest",
    )
    return fig


def _add_band(fig: go.Figure, x: pd.Series, band: pd.DataFrame, yaxis: str) -> None:
    """The baseline as a dotted line inside a shaded band (upper, then lower filled to it)."""
    fig.add_scatter(
        x=x,
        y=band["upper"],
        name="baseline band",
        legendgroup="baseline",
        showlegend=False,
        mode="lines",
        line={"width": 0},
        yaxis=yaxis,
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=x,
        y=band["lower"],
        name="baseline band",
        legendgroup="baseline",
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor=BAND_COLOR,
        yaxis=yaxis,
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=x,
        y=band["mean"],
        name="baseline",
        legendgroup="baseline",
        mode="lines",
        line={"dash": "dot", "width": 1, "color": "#1f77b4"},
        yaxis=yaxis,
        hovertemplate="%{x}<br>baseline %{y:.0%}<extra></extra>",
    )


def topic_lines(
    windows: pd.DataFrame, topics: Iterable[str] | None = None, alerts: pd.DataFrame | None = None
) -> go.Figure:
    """One mean-score line per topic (``topic:<name>`` series), limited to ``topics`` if given,
    with a marker on a line where an alert on that topic starts."""
    title = "Mean score by topic"
    rows = windows[windows["key"].str.startswith(TOPIC_PREFIX)] if not windows.empty else windows
    if rows.empty:
        return empty_figure(title)
    names = rows["key"].str.removeprefix(TOPIC_PREFIX)
    wanted = sorted(set(names) if topics is None else set(names) & set(topics))
    if not wanted:
        return empty_figure(title)

    fig = go.Figure()
    marks: list[tuple[Any, float, str, str]] = []
    for name in wanted:
        series = rows[names == name].sort_values("window_start")
        fig.add_scatter(
            x=series["window_start"],
            y=series["mean_score"],
            name=_text(name),
            mode="lines+markers",
            customdata=series["count"],
            hovertemplate="%{x}<br>mean score %{y:.2f} (%{customdata} items)",
        )
        hits = _alerts_in_range(alerts, TOPIC_PREFIX + name, series["window_start"])
        scores = dict(zip(series["window_start"], series["mean_score"], strict=True))
        for start, severity in zip(
            hits.get("window_start", ()), hits.get("severity", ()), strict=True
        ):
            if start in scores:
                marks.append((start, scores[start], name, severity))
    if marks:
        fig.add_scatter(
            x=pd.Series([m[0] for m in marks]),
            y=[m[1] for m in marks],
            name="alerts",
            mode="markers",
            marker={
                "symbol": "triangle-up",
                "size": 12,
                "color": [SEVERITY_COLORS.get(m[3], "#7f7f7f") for m in marks],
            },
            customdata=[[_text(m[2]), m[3]] for m in marks],
            hovertemplate="%{x}<br>%{customdata[1]} alert on %{customdata[0]}<extra></extra>",
        )
    fig.update_layout(
        title=title,
        yaxis={"title": "mean score", "range": SCORE_RANGE},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def volume_bars(windows: pd.DataFrame, key: str = "overall") -> go.Figure:
    """Items per window of one series."""
    title = f"Volume: {_text(key)}"
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


def ticker_trend(
    windows: pd.DataFrame, key: str, alerts: pd.DataFrame | None = None, *, span: int = 24
) -> go.Figure:
    """One series (a ticker's) in two rows: mean score and negative share with its baseline
    band and alert markers above, items per window below, on one time axis."""
    title = f"Sentiment and volume: {_text(key)}"
    series = _series(windows, key)
    if series.empty:
        return empty_figure(title)
    trend = sentiment_trend(windows, alerts, key, span=span)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        vertical_spacing=0.06,
        specs=[[{"secondary_y": True}], [{}]],
    )
    for trace in trend.data:
        fig.add_trace(trace, row=1, col=1, secondary_y=trace.yaxis == "y2")
    fig.add_bar(
        x=series["window_start"],
        y=series["count"],
        name="items",
        row=2,
        col=1,
        hovertemplate="%{x}<br>%{y} items<extra></extra>",
    )
    fig.update_layout(
        title=title, hovermode="closest", legend={"orientation": "h", "y": -0.15}, bargap=0.1
    )
    fig.update_yaxes(title_text="mean score", range=SCORE_RANGE, row=1, col=1, secondary_y=False)
    fig.update_yaxes(
        title_text="negative share",
        range=[0, 1],
        tickformat=".0%",
        showgrid=False,
        row=1,
        col=1,
        secondary_y=True,
    )
    fig.update_yaxes(title_text="items", row=2, col=1)
    return fig


def topic_names(windows: pd.DataFrame) -> list[str]:
    """The topics present in a frame of windows, sorted by total volume, busiest first."""
    if windows.empty:
        return []
    rows = windows[windows["key"].str.startswith(TOPIC_PREFIX)]
    totals = rows.groupby(rows["key"].str.removeprefix(TOPIC_PREFIX))["count"].sum()
    return sorted(totals.index, key=lambda name: (-totals[name], name))


# -- heatmap --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatCell:
    """One topic × window cell of the heatmap."""

    topic: str
    start: pd.Timestamp
    end: pd.Timestamp
    count: int
    neg_share: float

    @property
    def key(self) -> str:
        return TOPIC_PREFIX + self.topic


@dataclass(frozen=True)
class HeatMatrix:
    topics: list[str]  # rows, busiest first
    starts: list[pd.Timestamp]  # columns, oldest first
    z: list[list[float | None]]  # negative share per [topic][start]; None: no window
    cells: list[HeatCell]  # the windows that exist, row by row


def heatmap_matrix(windows: pd.DataFrame, topics: Iterable[str] | None = None) -> HeatMatrix:
    """Negative share by topic × window start, from the ``topic:*`` windows of one size."""
    rows = windows[windows["key"].str.startswith(TOPIC_PREFIX)] if not windows.empty else windows
    names = topic_names(rows)
    if topics is not None:
        keep = set(topics)
        names = [n for n in names if n in keep]
    if rows.empty or not names:
        return HeatMatrix([], [], [], [])
    rows = rows[rows["key"].isin([TOPIC_PREFIX + n for n in names])]
    starts = sorted(set(rows["window_start"]))
    column = {start: j for j, start in enumerate(starts)}
    row_of = {name: i for i, name in enumerate(names)}
    z: list[list[float | None]] = [[None] * len(starts) for _ in names]
    found: dict[tuple[int, int], HeatCell] = {}
    for name, start, end, count, neg_share in zip(
        rows["key"].str.removeprefix(TOPIC_PREFIX),
        _stamps(rows["window_start"]),
        _stamps(rows["window_end"]),
        rows["count"],
        rows["neg_share"],
        strict=True,
    ):
        i, j = row_of[name], column[start]
        z[i][j] = float(neg_share)
        found[i, j] = HeatCell(name, start, end, int(count), float(neg_share))
    return HeatMatrix(names, starts, z, [found[ij] for ij in sorted(found)])


def heatmap(matrix: HeatMatrix) -> go.Figure:
    """The heatmap, with an invisible marker at the centre of each cell so that a click
    selects the cell (plotly selects scatter points, not heatmap cells); plotly outlines the
    selected cell. The figure does not depend on the selection: a figure that changed with
    it would make the chart reset the selection it just made."""
    title = "Negative share by topic and window"
    if not matrix.cells:
        return empty_figure(title)
    fig = go.Figure()
    fig.add_heatmap(
        x=matrix.starts,
        y=[_text(t) for t in matrix.topics],
        z=matrix.z,
        zmin=0,
        zmax=1,
        colorscale=NEG_SCALE,
        colorbar={"title": {"text": "negative", "side": "right"}, "tickformat": ".0%"},
        hoverinfo="skip",
        xgap=1,
        ygap=1,
    )
    fig.add_scatter(
        x=[c.start for c in matrix.cells],
        y=[_text(c.topic) for c in matrix.cells],
        name="cells",
        mode="markers",
        showlegend=False,
        marker={"symbol": "square-open", "size": 14, "color": "#111111", "opacity": 0},
        selected={"marker": {"opacity": 1}},
        unselected={"marker": {"opacity": 0}},
        customdata=[[c.topic, c.start.isoformat(), c.count] for c in matrix.cells],
        hovertemplate=(
            "%{y}<br>%{x}<br>negative %{text}, %{customdata[2]} items"
            "<br>click for its headlines<extra></extra>"
        ),
        text=[f"{c.neg_share:.0%}" for c in matrix.cells],
    )
    fig.update_layout(
        title=title,
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "date"},
        hovermode="closest",
        hoverdistance=-1,  # the nearest cell centre answers, wherever in the cell one points
        clickmode="event+select",
        height=max(320, 60 + 28 * len(matrix.topics)),
    )
    return fig


def selected_cell(selection: Mapping[str, Any] | None, matrix: HeatMatrix) -> HeatCell | None:
    """The cell a plotly selection event points at (``event.selection`` of
    ``st.plotly_chart``): by the point's ``customdata`` (topic, start), else by its index on
    the marker trace, else by its (x, y)."""
    points = list((selection or {}).get("points") or [])
    if not points or not matrix.cells:
        return None
    point = points[-1]
    # Keyed as looked up: a point's timestamp may not parse.
    by_start: dict[tuple[str, pd.Timestamp | None], HeatCell] = {
        (c.topic, c.start): c for c in matrix.cells
    }
    custom = point.get("customdata")
    if isinstance(custom, list | tuple) and len(custom) >= 2:
        found = by_start.get((str(custom[0]), _timestamp(custom[1])))
        if found is not None:
            return found
    index = point.get("point_index", point.get("point_number"))
    if point.get("curve_number") == 1 and isinstance(index, int) and 0 <= index < len(matrix.cells):
        return matrix.cells[index]
    if "x" in point and "y" in point:
        by_label: dict[tuple[str, pd.Timestamp | None], HeatCell] = {
            (_text(c.topic), c.start): c for c in matrix.cells
        }
        return by_label.get((str(point["y"]), _timestamp(point["x"])))
    return None


def _timestamp(value: Any) -> pd.Timestamp | None:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- alerts ---------------------------------------------------------------------------------


def alert_segments(
    alerts: pd.DataFrame, events: pd.DataFrame, now: datetime | pd.Timestamp, tz: str = "UTC"
) -> pd.DataFrame:
    """Each alert's life as segments: one per state it went through, from the event that
    entered it to the next event (or ``now`` while it is still open). A resolution is a
    zero-length segment. Alerts without stored events get one from their own row. ``tz``: the
    zone of the labels' window start.

    Columns: alert_id, label, key, severity, state, start, end."""
    columns = ["alert_id", "label", "key", "severity", "state", "start", "end"]
    if alerts.empty:
        return pd.DataFrame(columns=columns)
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    by_alert = {aid: group for aid, group in events.groupby("alert_id")} if not events.empty else {}
    labels = {
        aid: _text(label) for aid, label in alert_labels(alerts, with_state=False, tz=tz).items()
    }
    rows: list[tuple[str, str, str, str, str, pd.Timestamp, pd.Timestamp]] = []
    for alert in _alert_rows(alerts):
        length = alert.window_end - alert.window_start
        history = by_alert.get(alert.id)
        steps: list[tuple[str, pd.Timestamp]]
        if history is not None:
            steps = list(zip(_texts(history["state"]), _stamps(history["at"]), strict=True))
            steps.sort(key=lambda step: (step[1], STATE_ORDER.get(step[0], 9)))
        else:
            steps = [("pending" if alert.state == "pending" else "firing", alert.started_at)]
            if alert.state == "resolved":
                steps.append(("resolved", alert.updated_at))
        begin = min(alert.started_at, steps[0][1])
        for i, (state, at) in enumerate(steps):
            start = begin if i == 0 else at
            if state == "resolved":
                end = start
            elif i + 1 < len(steps):
                end = max(steps[i + 1][1], start + length)
            else:
                end = max(now, start + length)
            rows.append((alert.id, labels[alert.id], alert.key, alert.severity, state, start, end))
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class _AlertRow:
    """The columns of an alerts row that the timeline reads, typed."""

    id: str
    key: str
    severity: str
    state: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    started_at: pd.Timestamp
    updated_at: pd.Timestamp


def _alert_rows(alerts: pd.DataFrame) -> list[_AlertRow]:
    texts = zip(
        _texts(alerts["id"]),
        _texts(alerts["key"]),
        _texts(alerts["severity"]),
        _texts(alerts["state"]),
        strict=True,
    )
    times = zip(
        _stamps(alerts["window_start"]),
        _stamps(alerts["window_end"]),
        _stamps(alerts["started_at"]),
        _stamps(alerts["updated_at"]),
        strict=True,
    )
    return [_AlertRow(*text, *time) for text, time in zip(texts, times, strict=True)]


def alert_timeline(segments: pd.DataFrame) -> go.Figure:
    """Alerts as rows of coloured bars: pending, then firing; a mark where each resolved."""
    title = "Alert timeline"
    if segments.empty:
        return empty_figure(title)
    order = list(dict.fromkeys(segments.sort_values("start", ascending=False)["label"]))
    fig = go.Figure()
    for state in ("pending", "firing"):
        part = segments[segments["state"] == state]
        if part.empty:
            continue
        spans = (part["end"] - part["start"]).dt.total_seconds() * 1000  # date axes count ms
        fig.add_bar(
            x=spans,
            base=part["start"],
            y=part["label"],
            orientation="h",
            name=state,
            marker={"color": STATE_COLORS[state]},
            customdata=part[["alert_id", "severity"]].to_numpy(),
            hovertemplate=(
                f"%{{y}}<br>{state} from %{{base}}<br>%{{customdata[1]}}<extra></extra>"
            ),
        )
    resolved = segments[segments["state"] == "resolved"]
    if not resolved.empty:
        fig.add_scatter(
            x=resolved["start"],
            y=resolved["label"],
            name="resolved",
            mode="markers",
            marker={"symbol": "diamond", "size": 11, "color": STATE_COLORS["resolved"]},
            customdata=resolved[["alert_id"]].to_numpy(),
            hovertemplate="%{y}<br>resolved at %{x}<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="overlay",
        xaxis={"type": "date"},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": order[::-1]},
        legend={"orientation": "h", "y": -0.2},
        height=max(280, 90 + 26 * len(order)),
    )
    return fig


def alert_labels(
    alerts: pd.DataFrame, *, with_state: bool = True, tz: str = "UTC"
) -> dict[str, str]:
    """Readable, unique labels per alert id: ``key · state · window start`` (in ``tz``)."""
    labels: dict[str, str] = {}
    if alerts.empty:  # it may have no columns either
        return labels
    for alert_id, key, state, window_start in zip(
        _texts(alerts["id"]),
        _texts(alerts["key"]),
        _texts(alerts["state"]),
        _stamps(alerts["window_start"]),
        strict=True,
    ):
        parts = [key, state] if with_state else [key]
        parts.append(f"{_wall(window_start, ZoneInfo(tz)):%Y-%m-%d %H:%M}")
        labels[alert_id] = " · ".join(parts)
    counts = pd.Series(list(labels.values())).value_counts()
    return {
        aid: f"{label} · {aid[:8]}" if counts[label] > 1 else label for aid, label in labels.items()
    }


# -- time zone ------------------------------------------------------------------------------


def in_time_zone(fig: go.Figure, tz: str) -> go.Figure:
    """``fig`` with its times (trace x values, bar bases, vertical lines) moved from UTC to the
    wall clock of ``tz``, in place; hover text follows. ``customdata`` keeps UTC, so a clicked
    heatmap cell is still found by it."""
    if tz == "UTC":
        return fig
    zone = ZoneInfo(tz)
    for trace in fig.data:
        for name in ("x", "base"):
            if name in trace:
                moved = _zoned_values(trace[name], zone)
                if moved is not None:
                    trace[name] = moved
    for shape in fig.layout.shapes or ():
        for name in ("x0", "x1"):
            value = shape[name]
            if isinstance(value, datetime):
                shape[name] = _wall(pd.Timestamp(value), zone)
    return fig


def _wall(stamp: pd.Timestamp, zone: ZoneInfo) -> pd.Timestamp:
    """A UTC time (aware, or naive meaning UTC) as the naive wall-clock time in ``zone``."""
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return stamp.tz_convert(zone).tz_localize(None)


def _zoned_values(values: Any, zone: ZoneInfo) -> Any:
    """A trace's time values in ``zone``, or None when they are not times. Plotly keeps a
    datetime column as naive UTC datetime64, and a list of datetimes as it was given."""
    if values is None:
        return None
    array = getattr(values, "dtype", None)
    if array is not None and array.kind == "M":
        index = pd.DatetimeIndex(values).tz_localize("UTC")
        return index.tz_convert(zone).tz_localize(None).to_numpy()
    if isinstance(values, list | tuple) and values and all(isinstance(v, datetime) for v in values):
        return [_wall(pd.Timestamp(v), zone) for v in values]
    return None


# -- helpers --------------------------------------------------------------------------------


def _text(value: object) -> str:
    """Feed-derived text (series keys name sources and tickers) for plotly, which reads a
    few HTML tags in titles, labels and hover text: escaped, it shows as itself."""
    return html.escape(str(value), quote=False)


def _texts(column: pd.Series) -> list[str]:
    """A text column's values, typed (pandas-stubs types a cell as any scalar)."""
    return column.astype(str).tolist()


def _stamps(column: pd.Series) -> list[pd.Timestamp]:
    """A datetime column's values, typed, as iterating the column gives them."""
    return list(pd.DatetimeIndex(column))


def _series(windows: pd.DataFrame, key: str) -> pd.DataFrame:
    if windows.empty:
        return windows
    return windows[windows["key"] == key].sort_values("window_start")


def _alerts_in_range(alerts: pd.DataFrame | None, key: str, starts: pd.Series) -> pd.DataFrame:
    """Alerts on ``key`` whose window lies within the plotted range, so markers never stretch
    the time axis beyond the data."""
    if alerts is None or alerts.empty or starts.empty:
        return pd.DataFrame()
    hits = alerts[
        (alerts["key"] == key)
        & (alerts["window_start"] >= starts.min())
        & (alerts["window_start"] <= starts.max())
    ]
    return hits.sort_values("window_start")
