"""Tickers: one ticker's sentiment against its baseline, its volume, and its headlines."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard.figures import ticker_trend
from finsent.dashboard.tables import headlines_table

OPTIONS = 500  # tickers offered, busiest first
LIMIT = 200  # headlines shown

ui.page_start("Tickers", "One ticker at a time: its sentiment, volume, alerts and headlines.")


@st.fragment(run_every=ui.refresh_seconds())
def live(lookback: timedelta | None) -> None:
    url = ui.store_url()
    view = ui.current_view(lookback)
    if view is None:
        st.info("Waiting for data: nothing has been scored yet. This page refreshes by itself.")
        return
    totals = ui.cached_series(url, "ticker:", view.size_seconds, view.since, OPTIONS)
    watched = ui.watchlist_only("ticker_watchlist")
    if watched is not None and not totals.empty:
        totals = totals[totals["name"].isin(watched.tickers)]
    if totals.empty:
        where = " of the watchlist" if watched is not None else ""
        st.info(f"No ticker{where} has been mentioned in this period.")
        return
    counts = dict(zip(totals["name"], totals["items"], strict=True))
    shares = dict(zip(totals["name"], totals["neg_share"], strict=True))
    ticker = st.selectbox(
        "Ticker",
        list(counts),
        format_func=lambda t: f"{t} · {counts[t]:,} items · {shares[t]:.0%} negative",
        key="ticker_pick",
    )
    if ticker is None:
        return
    key = f"ticker:{ticker}"
    windows = ui.cached_windows(url, key, None, view.since, view.until, view.size_seconds)
    alerts = ui.cached_alerts(url, view.since)
    st.plotly_chart(
        ui.chart(ticker_trend(windows, key, alerts, span=ui.settings().alert_baseline_windows)),
        key="ticker_trend",
    )
    rows = ui.cached_headlines(url, since=view.since, ticker=ticker, limit=LIMIT)
    st.caption(
        f"{len(rows):,} headlines, newest first"
        + (f" (the newest {LIMIT})." if len(rows) == LIMIT else ".")
    )
    ui.table(
        headlines_table(rows, ui.zone_name()),
        "ticker_headlines",
        column_config=ui.headline_columns(),
    )


live(ui.lookback())
