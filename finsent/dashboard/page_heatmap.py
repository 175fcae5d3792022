"""Heatmap: negative share by topic × window. Click a cell for that window's headlines."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard.figures import heatmap, heatmap_matrix, selected_cell
from finsent.dashboard.tables import headlines_table

DRILL_LIMIT = 200

ui.page_start("Heatmap", "Negative share by topic and window. Click a cell for its headlines.")


@st.fragment(run_every=ui.refresh_seconds())
def live(lookback: timedelta | None) -> None:
    url = ui.store_url()
    view = ui.current_view(lookback, max_points=ui.MAX_COLUMNS)
    if view is None:
        st.info("Waiting for data: no topic windows yet. This page refreshes by itself.")
        return
    topics = ui.cached_windows(url, None, "topic:", view.since, view.until, view.size_seconds)
    matrix = heatmap_matrix(topics)
    if not matrix.cells:
        st.info("No topic windows in this period.")
        return
    st.caption(f"{view.size_label} windows, {len(matrix.topics)} topics, busiest at the top.")
    event = st.plotly_chart(
        ui.chart(heatmap(matrix)), key="heatmap", on_select="rerun", selection_mode="points"
    )
    cell = selected_cell(event.selection if event else None, matrix)
    if cell is None:
        st.caption("Click a cell to see the headlines of that topic in that window.")
        return

    start, end = ui.local(cell.start.to_pydatetime()), ui.local(cell.end.to_pydatetime())
    st.subheader(f"{cell.topic}: {start:%Y-%m-%d %H:%M} – {end:%H:%M} {ui.zone_name()}")
    st.caption(
        f"{cell.count:,} items, {cell.neg_share:.0%} negative; most negative first"
        + (f", the first {DRILL_LIMIT}." if cell.count > DRILL_LIMIT else ".")
    )
    rows = ui.cached_window_headlines(
        url, cell.key, cell.start.to_pydatetime(), cell.end.to_pydatetime(), DRILL_LIMIT
    )
    ui.table(
        headlines_table(rows, ui.zone_name()),
        "heatmap_headlines",
        column_config=ui.headline_columns(),
    )


live(ui.lookback())
