"""Headlines: every scored story, filtered by time, topic, source, ticker, sentiment and the
watchlist, with its most-attended words, a link to the source, a CSV export of what is
shown, and a form to correct one headline's sentiment or topic. A link from an alert
(``?series=...&from=...&to=...``) shows that series' window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from finsent.core.vocabulary import SENTIMENTS
from finsent.dashboard import common as ui
from finsent.dashboard import queries
from finsent.dashboard.correction_form import correction_form
from finsent.dashboard.safe import csv_bytes, escape_text, headline_html, headlines_html
from finsent.dashboard.tables import headlines_table

LIMIT = 1000  # rows shown and exported: the newest that match
HIGHLIGHTED = 20
OPTIONS = 200  # topics and sources offered in the filters, busiest first

ui.page_start("Headlines", "Scored stories, newest first. Filters apply to the table and the CSV.")

url = ui.store_url()
labels = list(ui.LOOKBACKS)
try:
    # A link from an alert (``?series=...&from=...&to=...``): that series' window alone.
    linked = ui.SeriesWindow.from_params(st.query_params)
except ValueError as exc:
    st.warning(f"The link's filter is ignored: {escape_text(exc)}")
    linked = None
if linked is not None:
    start, end = ui.local(linked.start), ui.local(linked.end)
    st.info(
        f"The headlines of {escape_text(linked.key)} published from "
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {escape_text(ui.zone_name())}, "
        "as linked from an alert.",
        icon=":material/link:",
    )
    st.page_link("page_headlines.py", label="Show all headlines", icon=":material/close:")
    range_label = ui.lookback_label()
    topics: list[str] = []
    sources: list[str] = []
    ticker = ""
    sentiments = st.multiselect(
        "Sentiment", list(SENTIMENTS), key="hl_sentiment", placeholder="all"
    )
else:
    range_label = st.selectbox(
        "Time range",
        labels,
        index=labels.index(ui.lookback_label()),
        key="hl_range",
        help="Counted back from the newest story.",
    )
    view = ui.current_view(ui.LOOKBACKS[range_label])
    if view is None:
        topic_options: list[str] = []
        source_options: list[str] = []
    else:
        topic_options = ui.cached_series(url, "topic:", view.size_seconds, view.since, OPTIONS)[
            "name"
        ].tolist()
        source_options = ui.cached_series(url, "source:", view.size_seconds, view.since, OPTIONS)[
            "name"
        ].tolist()
    topic_col, source_col, sentiment_col, ticker_col = st.columns(4)
    topics = topic_col.multiselect("Topics", topic_options, key="hl_topics", placeholder="all")
    sources = source_col.multiselect("Sources", source_options, key="hl_sources", placeholder="all")
    sentiments = sentiment_col.multiselect(
        "Sentiment", list(SENTIMENTS), key="hl_sentiment", placeholder="all"
    )
    ticker = (
        ticker_col.text_input("Ticker", key="hl_ticker", placeholder="e.g. AAPL").strip().upper()
    )
watched = ui.watchlist_only("hl_watchlist")


def filters(window: timedelta | None) -> dict[str, Any] | None:
    """The ``load_headlines`` filters of what the page shows; None while the store is empty."""
    view = ui.current_view(window)
    if view is None:
        return None
    chosen: dict[str, Any] = {
        "since": view.since,
        "topics": tuple(topics),
        "sources": tuple(sources),
        "sentiments": tuple(sentiments),
        "ticker": ticker or None,
        "tickers": watched.tickers if watched is not None else (),
        "limit": LIMIT,
    }
    if linked is not None:
        chosen.update(linked.filters())
    return chosen


@st.fragment(run_every=ui.refresh_seconds())
def live(window: timedelta | None) -> None:
    chosen = filters(window)
    if chosen is None:
        st.info("Waiting for data: nothing has been scored yet. This page refreshes by itself.")
        return
    rows = ui.cached_headlines(url, **chosen)
    if rows.empty:
        st.info("No headlines match these filters.")
        return
    table = headlines_table(rows, ui.zone_name())
    more = (
        " (the newest that match; narrow the filters for older ones)" if len(rows) == LIMIT else ""
    )
    st.caption(f"{len(rows):,} headlines{more}.")
    ui.table(
        table,
        "hl_table",
        column_config=ui.headline_columns(),
    )
    with st.expander(f"The newest {min(HIGHLIGHTED, len(rows))} with their attended words marked"):
        lines = [
            headline_html(
                rec.title,
                rec.top_tokens,
                url=rec.url,
                meta=f"{rec.source} · {rec.topic} · {rec.sentiment} {rec.score:+.2f}",
            )
            for rec in rows.head(HIGHLIGHTED).itertuples()
        ]
        # Safe: every piece of feed text in this HTML went through dashboard.safe's escaping.
        st.markdown(headlines_html(lines), unsafe_allow_html=True)


live(ui.LOOKBACKS[range_label])
exported = filters(ui.LOOKBACKS[range_label])


def export() -> bytes:
    """The filtered rows as CSV (times in UTC, as stored), read when the button is clicked:
    nothing is built or kept per refresh tick."""
    rows = queries.load_headlines(url, **exported) if exported is not None else pd.DataFrame()
    return csv_bytes(headlines_table(rows))


# Outside the fragment, with its data deferred to the click: a download button inside a
# refreshing fragment would make and drop a file at every tick.
st.download_button(
    "Download CSV",
    data=export,
    file_name="finsent-headlines.csv",
    mime="text/csv",
    key="hl_csv",
    on_click="ignore",
)
st.caption(f"The CSV holds the newest {LIMIT:,} headlines that match, as they are when you click.")

# Outside the refreshing fragment too: a tick never redraws the form while someone types.
st.subheader("Correct a headline")
st.caption(
    "Set the sentiment and/or the topic the model should have given; every correction is kept, "
    "the latest per story wins, and `finsent retrain` learns from them."
)
correction_form(
    url,
    ui.cached_headlines(url, **exported) if exported is not None else pd.DataFrame(),
    "hl_fix",
)
