"""Overview: the store's vital signs, the overall trend against its baseline with alert
markers, volume, and the topics' trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard.figures import sentiment_trend, topic_lines, topic_names, volume_bars

DEFAULT_TOPICS = 5  # the busiest topics are preselected; more would clutter the chart

ui.page_start("Overview", "Sentiment of the news flow, its baseline, and where it broke out.")


@st.fragment(run_every=ui.refresh_seconds())
def live(lookback: timedelta | None) -> None:
    """Everything that changes with the data; reruns on its own timer, not the whole page."""
    url = ui.store_url()
    summary = ui.cached_summary(url)
    items, n_windows, firing, updated, lag_col = st.columns(5)
    items.metric("Items scored", f"{summary.scored_items:,}")
    n_windows.metric("Windows", f"{summary.windows:,}")
    firing.metric("Firing alerts", f"{summary.firing_alerts:,}")
    updated.metric(
        ui.time_label("Last update"),
        ui.format_time(summary.last_update, datetime.now(UTC), ui.zone_name()),
        help=summary.last_update.isoformat() if summary.last_update else None,
    )
    lag = ui.current_lag()
    lag_col.metric(
        "Consumer lag",
        f"{lag.total:,}" if lag is not None else "n/a",
        help=(
            f"Records the stages have yet to read: {lag.describe() or 'none'}."
            if lag is not None
            else "Kafka is unreachable, or no stage has stored offsets yet."
        ),
    )

    view = ui.current_view(lookback)
    if summary.empty or view is None:
        st.info("Waiting for data: nothing has been scored yet. This page refreshes by itself.")
        return

    config = ui.settings()
    overall = ui.cached_windows(url, "overall", None, view.since, view.until, view.size_seconds)
    topics = ui.cached_windows(url, None, "topic:", view.since, view.until, view.size_seconds)
    alerts = ui.cached_alerts(url, view.since)
    st.caption(
        f"{view.size_label} windows · baseline: EWMA of the negative share over "
        f"{config.alert_baseline_windows} windows, ± 2 standard deviations."
    )

    st.plotly_chart(
        ui.chart(sentiment_trend(overall, alerts, span=config.alert_baseline_windows)),
        key="trend",
        width="stretch",
    )
    volume_col, topic_col = st.columns(2)
    with volume_col:
        st.plotly_chart(ui.chart(volume_bars(overall)), key="volume", width="stretch")
    with topic_col:
        names = topic_names(topics)
        # A key keeps the selection while new topics appear in the options.
        chosen = st.multiselect(
            "Topics", names, default=names[:DEFAULT_TOPICS], key="topics", placeholder="all"
        )
        st.plotly_chart(
            ui.chart(topic_lines(topics, chosen or None, alerts)),
            key="topic_lines",
            width="stretch",
        )


live(ui.lookback())
