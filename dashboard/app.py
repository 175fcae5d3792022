"""The finsent dashboard: one Streamlit page over the store, refreshed in place.

Launched by ``finsent dashboard`` as ``streamlit run dashboard/app.py`` with the FINSENT_*
environment set. Feed text (titles, sources, words) reaches the page only through
``st.dataframe``, which draws cells as plain text, never as HTML or Markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.figures import sentiment_trend, topic_lines, topic_names, volume_bars
from finsent.settings import get_settings
from finsent.store import Store

LOOKBACKS: dict[str, timedelta | None] = {
    "6 hours": timedelta(hours=6),
    "24 hours": timedelta(hours=24),
    "3 days": timedelta(days=3),
    "7 days": timedelta(days=7),
    "all": None,
}
DEFAULT_TOPICS = 5  # the busiest topics are preselected; more would clutter the chart

settings = get_settings()
STORE_URL = settings.database_url
# Half the refresh period: every open tab shares one query per tick, and no tick shows data
# older than half a period.
CACHE_TTL = max(settings.dashboard_refresh_seconds / 2, 0.5)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def cached_summary(url: str) -> queries.StoreSummary:
    return queries.store_summary(url)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def cached_windows(
    url: str, key: str | None, prefix: str | None, since: datetime | None
) -> pd.DataFrame:
    # The series of the window size alerts watch; the store holds every configured size.
    size = int(settings.alert_window_spec.size.total_seconds())
    return queries.load_windows(url, key=key, prefix=prefix, since=since, size_seconds=size)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def cached_alerts(url: str) -> pd.DataFrame:
    return queries.load_alerts(url)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def cached_headlines(url: str) -> pd.DataFrame:
    return queries.load_headlines(url)


def format_time(value: datetime | None, now: datetime) -> str:
    """Short enough for a metric: the time alone today, the date too otherwise (all UTC)."""
    if value is None:
        return "—"
    return value.strftime("%H:%M:%S" if value.date() == now.date() else "%b %d %H:%M")


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


def acknowledge_form(alerts: pd.DataFrame) -> None:
    """Take an open alert on: who, and a comment. Stored with the alert's history."""
    open_alerts = alerts[alerts["state"].isin(["pending", "firing"]) & alerts["acked_by"].isna()]
    if open_alerts.empty:
        return
    labels = {
        row.id: f"{row.key} · {row.state} · {row.window_start:%Y-%m-%d %H:%M}"
        for row in open_alerts.itertuples()
    }
    with st.form("ack", clear_on_submit=True):
        st.markdown("**Acknowledge an alert**")
        alert_id = st.selectbox("Alert", list(labels), format_func=labels.get, key="ack_alert")
        owner = st.text_input("Owner", key="ack_owner")
        comment = st.text_input("Comment", key="ack_comment")
        if st.form_submit_button("Acknowledge"):
            if not owner.strip():
                st.warning("Say who takes it on.")
            elif Store(STORE_URL).acknowledge(
                alert_id, by=owner.strip(), comment=comment.strip(), at=datetime.now(UTC)
            ):
                cached_alerts.clear()
                st.toast(f"Acknowledged by {owner.strip()}.")
                st.rerun()  # show it in the table now, not at the next tick


def headlines_table(headlines: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Time (UTC)": headlines["published_at"].dt.tz_localize(None),
            "Source": headlines["source"],
            "Topic": headlines["topic"],
            "Sentiment": headlines["sentiment"],
            "Score": headlines["score"],
            "Title": headlines["title"],
            "Top words": [", ".join(words) for words in headlines["top_tokens"]],
        }
    )


@st.fragment(run_every=settings.dashboard_refresh_seconds)
def live_view(lookback: timedelta | None) -> None:
    """Everything that changes with the data; reruns on its own timer, not the whole page."""
    summary = cached_summary(STORE_URL)
    items, n_windows, firing, updated = st.columns(4)
    items.metric("Items scored", f"{summary.scored_items:,}")
    n_windows.metric("Windows", f"{summary.windows:,}")
    firing.metric("Firing alerts", f"{summary.firing_alerts:,}")
    updated.metric(
        "Last update (UTC)",
        format_time(summary.last_update, datetime.now(UTC)),
        help=summary.last_update.isoformat() if summary.last_update else None,
    )

    if summary.empty:
        st.info("Waiting for data: nothing has been scored yet. This page refreshes by itself.")
        return

    # The look-back counts from the newest window, not the wall clock, so a replayed
    # historical feed shows up the same as a live one.
    since = None
    if lookback is not None and summary.latest_window_start is not None:
        since = summary.latest_window_start - lookback
    overall = cached_windows(STORE_URL, "overall", None, since)
    topics = cached_windows(STORE_URL, None, "topic:", since)
    alerts = cached_alerts(STORE_URL)

    st.plotly_chart(sentiment_trend(overall, alerts), key="trend")
    volume_col, topic_col = st.columns(2)
    with volume_col:
        st.plotly_chart(volume_bars(overall), key="volume")
    with topic_col:
        names = topic_names(topics)
        # A key keeps the selection while new topics appear in the options.
        chosen = st.multiselect(
            "Topics", names, default=names[:DEFAULT_TOPICS], key="topics", placeholder="all"
        )
        st.plotly_chart(topic_lines(topics, chosen or None), key="topic_lines")

    st.subheader("Alerts")
    if alerts.empty:
        st.caption("No alerts yet.")
    else:
        st.dataframe(
            alerts_table(alerts),
            hide_index=True,
            column_config={
                "Neg share": st.column_config.NumberColumn(format="percent"),
                "Baseline": st.column_config.NumberColumn(format="percent"),
                "Z-score": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        acknowledge_form(alerts)

    st.subheader("Latest headlines")
    headlines = cached_headlines(STORE_URL)
    if headlines.empty:
        st.caption("No headlines yet.")
    else:
        st.dataframe(
            headlines_table(headlines),
            hide_index=True,
            column_config={
                "Time (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                "Score": st.column_config.NumberColumn(format="%.2f"),
                "Title": st.column_config.TextColumn(width="large"),
            },
        )


st.set_page_config(page_title="finsent", layout="wide")
st.title("finsent")
st.caption("Streaming financial-news sentiment: scored headlines, windowed trends and alerts.")
lookback_label = st.sidebar.selectbox("Look back", list(LOOKBACKS), index=1)
st.sidebar.caption(f"Refreshes every {settings.dashboard_refresh_seconds:g} s.")
live_view(LOOKBACKS[lookback_label])
