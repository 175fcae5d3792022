"""Alerts: the timeline of alert states, one alert's evidence against its baseline, the
forms to acknowledge an alert and to silence a family of series, the silences in force,
each of which can be ended early, and a form to correct the alert's contributing headlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from finsent.alerts.silences import ANY_SEVERITY, SilenceError, expire_silence, new_silence
from finsent.core.vocabulary import SEVERITIES
from finsent.dashboard import common as ui
from finsent.dashboard import queries
from finsent.dashboard.correction_form import correction_form
from finsent.dashboard.figures import alert_labels, alert_segments, alert_timeline, sentiment_trend
from finsent.dashboard.safe import escape_text, headline_html, headlines_html
from finsent.dashboard.tables import alerts_table, headlines_table, silences_table
from finsent.runtime.store import Store

HIGHLIGHTED = 10  # contributing headlines shown with their attended words marked
WINDOW_ITEMS = 100
CONTEXT_WINDOWS = 24  # windows of history drawn before the alert's own
DEFAULT_SILENCE = "2h"

ui.page_start(
    "Alerts",
    "Spikes of negative news against each series' own baseline: pending, firing, resolved.",
)


@st.fragment(run_every=ui.refresh_seconds())
def live(lookback: timedelta | None) -> None:
    url = ui.store_url()
    view = ui.current_view(lookback)
    alerts = ui.cached_alerts(url, view.since if view else None)
    watchlist = ui.watchlist()
    if ui.watchlist_only("alerts_watchlist", watchlist) is not None and not alerts.empty:
        alerts = alerts[alerts["key"].isin(watchlist.keys)]
    if view is None or alerts.empty:
        st.info("No alerts in this period. This page refreshes by itself.")
        show_silences(url)
        return

    tz = ui.zone_name()
    events = ui.cached_events(url, tuple(alerts["id"]))
    segments = alert_segments(alerts, events, view.anchor, tz)
    st.plotly_chart(ui.chart(alert_timeline(segments)), key="alert_timeline")
    ui.table(
        alerts_table(alerts, tz, watchlist.keys if watchlist else None),
        "alerts_table",
        column_config={
            "Neg share": st.column_config.NumberColumn(format="percent"),
            "Baseline": st.column_config.NumberColumn(format="percent"),
            "Z-score": st.column_config.NumberColumn(format="%.2f"),
        },
    )

    labels = alert_labels(alerts, tz=tz)
    picked = st.selectbox("Alert", list(labels), format_func=labels.__getitem__, key="alert_pick")
    if picked is not None:
        show_detail(url, picked, alerts)
    show_silences(url)


def show_detail(url: str, alert_id: str, alerts: pd.DataFrame) -> None:
    detail = ui.cached_alert_detail(url, alert_id)
    if detail is None:
        st.warning("This alert is no longer in the store.")
        return
    neg, base, std = detail["neg_share"], detail["baseline_mean"], detail["baseline_std"]
    share, baseline, zscore, stories, score = st.columns(5)
    share.metric(
        "Negative share", f"{neg:.0%}", f"{neg - base:+.0%} vs baseline", delta_color="inverse"
    )
    baseline.metric("Baseline", f"{base:.0%} ± {std:.0%}")
    zscore.metric("Z-score", f"{detail['zscore']:.1f}")
    stories.metric("Stories", f"{detail['count']:,}")
    mean, base_score = detail.get("mean_score"), detail.get("baseline_score")
    score.metric(
        "Mean score",
        f"{mean:+.2f}" if mean is not None else "—",
        f"{mean - base_score:+.2f} vs baseline"
        if mean is not None and base_score is not None
        else None,
    )
    state = f"{detail['severity']} · {detail['state']} · rule {detail['rule']}"
    if detail.get("acked_by"):
        state += f" · acknowledged by {detail['acked_by']}"
        if detail.get("ack_comment"):
            state += f": {detail['ack_comment']}"
    st.caption(escape_text(state))

    start, end = detail["window_start"], detail["window_end"]
    size = end - start
    size_seconds = int(size.total_seconds())
    history = ui.cached_windows(
        url,
        detail["key"],
        None,
        start - CONTEXT_WINDOWS * size,
        end + 6 * size,
        size_seconds,
    )
    same_key = alerts[alerts["key"] == detail["key"]]
    st.plotly_chart(
        ui.chart(
            sentiment_trend(
                history, same_key, detail["key"], span=ui.settings().alert_baseline_windows
            )
        ),
        key="alert_trend",
    )

    st.subheader("Contributing headlines")
    st.page_link(
        "page_headlines.py",
        label="All headlines of this window",
        icon=":material/newspaper:",
        query_params=ui.SeriesWindow(detail["key"], start, end).query_params(),
    )
    rows = ui.cached_window_headlines(url, detail["key"], start, end, WINDOW_ITEMS)
    if rows.empty:
        show_stored_headlines(detail["headlines"])
        return
    st.caption(
        f"The window's stories, most negative first; the words the model attended to most "
        f"are marked. {len(rows):,} shown."
    )
    lines = [
        headline_html(
            rec.title,
            rec.top_tokens,
            url=rec.url,
            meta=f"{rec.source} · {rec.sentiment} {rec.score:+.2f}",
        )
        for rec in rows.head(HIGHLIGHTED).itertuples()
    ]
    # Safe: every piece of feed text in this HTML went through dashboard.safe's escaping.
    st.markdown(headlines_html(lines), unsafe_allow_html=True)
    with st.expander(f"All {len(rows):,} stories of the window"):
        ui.table(
            headlines_table(rows, ui.zone_name()),
            "alert_headlines",
            column_config=ui.headline_columns(),
        )


def show_stored_headlines(headlines: list[dict[str, Any]]) -> None:
    """The top headlines the alert stored, for stores that no longer hold its stories."""
    if not headlines:
        st.caption("No headlines stored with this alert.")
        return
    lines = [
        headline_html(
            h.get("title", ""),
            h.get("top_tokens", ()),
            url=h.get("url"),
            meta=f"{h.get('source', '')} · score {float(h.get('score', 0.0)):+.2f}",
        )
        for h in headlines[:HIGHLIGHTED]
    ]
    st.markdown(headlines_html(lines), unsafe_allow_html=True)  # escaped by dashboard.safe


SILENCE_COLUMNS = (3, 1, 2, 2, 3, 1)  # match, severity, until, by, comment, the button


def show_silences(url: str) -> None:
    """The silences in force, each with a button that ends it now."""
    silences = ui.cached_silences(url)
    if silences.empty:
        return
    st.subheader("Active silences")
    shown = silences_table(silences)
    with st.container(key="silences"):
        for cell, name in zip(st.columns(SILENCE_COLUMNS), [*shown.columns, ""], strict=True):
            cell.caption(name)
        for silence_id, row in zip(silences["id"], shown.itertuples(index=False), strict=True):
            *cells, button = st.columns(SILENCE_COLUMNS)
            for cell, value in zip(cells, row, strict=True):
                # Matchers and comments are typed by people: shown as typed.
                cell.markdown(
                    f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else escape_text(value)
                )
            if button.button("Expire", key=f"expire_{silence_id}", help="End this silence now."):
                expire(url, silence_id)


def expire(url: str, silence_id: str) -> None:
    now = datetime.now(UTC)
    store = Store(url)
    try:
        ended = expire_silence(store.active_silences(now), silence_id, now)
    except SilenceError:  # someone else ended it, or it ran out, since the page was drawn
        ui.forget_alerts()
        st.warning("This silence has already ended.")
        return
    store.add_silence(ended.to_row())
    ui.forget_alerts()
    ui.flash(f"Expired the silence of {ended.matcher}.")
    st.rerun()


def picked_key(url: str) -> str | None:
    picked = st.session_state.get("alert_pick")
    detail = ui.cached_alert_detail(url, picked) if picked else None
    return detail["key"] if detail else None


def contributing_stories(url: str) -> pd.DataFrame:
    """The picked alert's contributing stories, as its detail lists them: the window's
    stories, most negative first, else those of the headlines it stored still in the store."""
    picked = st.session_state.get("alert_pick")
    detail = ui.cached_alert_detail(url, picked) if picked else None
    if detail is None:
        return pd.DataFrame()
    start, end = detail["window_start"], detail["window_end"]
    rows = ui.cached_window_headlines(url, detail["key"], start, end, WINDOW_ITEMS)
    if rows.empty:
        ids = [h["id"] for h in detail["headlines"] if isinstance(h, dict) and h.get("id")]
        rows = queries.load_stories(url, ids)
    return rows


def acknowledge(url: str, owner: str, comment: str) -> None:
    picked = st.session_state.get("alert_pick")
    if not picked:
        st.warning("Pick an alert above first.")
    elif not owner.strip():
        st.warning("Say who takes it on.")
    elif Store(url).acknowledge(
        picked, by=owner.strip(), comment=comment.strip(), at=datetime.now(UTC)
    ):
        ui.forget_alerts()
        ui.flash(f"Acknowledged by {owner.strip()}.")
        st.rerun()  # show it now, not at the next tick
    else:
        st.warning("This alert is no longer in the store.")


def silence(
    url: str, match: str, duration: str, severity: str | None, by: str, comment: str
) -> None:
    # Blank fields fall back to the picked alert's series and the form's default length.
    matcher = match.strip() or picked_key(url) or ""
    try:
        made = new_silence(
            matcher,
            duration.strip() or DEFAULT_SILENCE,
            severity=severity,
            author=by,
            comment=comment,
            now=datetime.now(UTC),
        )
    except SilenceError as exc:
        st.warning(str(exc))
        return
    Store(url).add_silence(made.to_row())
    ui.forget_alerts()
    ui.flash(f"Silenced {made.matcher} until {made.ends_at:%Y-%m-%d %H:%M} UTC.")
    st.rerun()


live(ui.lookback())

# The forms live outside the fragment: a refresh tick never redraws them while someone types.
url = ui.store_url()
ack_col, silence_col = st.columns(2)
with ack_col, st.form("ack", clear_on_submit=True):
    st.markdown("**Acknowledge the selected alert**")
    owner = st.text_input("Owner", key="ack_owner", placeholder="who takes it on")
    ack_comment = st.text_input("Comment", key="ack_comment")
    if st.form_submit_button("Acknowledge"):
        acknowledge(url, owner, ack_comment)
with silence_col, st.form("silence", clear_on_submit=True):
    st.markdown("**Silence notifications**")
    match = st.text_input(
        "Series (glob)",
        key="silence_match",
        placeholder="the selected alert's series, or e.g. ticker:*",
    )
    duration = st.text_input(
        "For", value=DEFAULT_SILENCE, key="silence_for", help="e.g. 30m, 2h, 1d"
    )
    severity = st.selectbox("Severity", [ANY_SEVERITY, *SEVERITIES], key="silence_severity")
    by = st.text_input("By", key="silence_by")
    silence_comment = st.text_input("Comment", key="silence_comment")
    if st.form_submit_button("Silence"):
        silence(url, match, duration, severity, by, silence_comment)

# The alert's evidence, corrected where the model got it wrong: what analysts are told follows.
with st.expander("Correct a contributing headline of the selected alert"):
    correction_form(url, contributing_stories(url), "alert_fix")
