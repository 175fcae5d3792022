"""The widgets analysts correct the model with: a form for one picked headline (Headlines and
Alerts pages) and one-click buttons (the Review page), sharing the analyst's name.

A submission runs as the button's callback, before the page's script: the label is written,
the fields are reset and the page then draws the new state (or the form's error) at once.
Feed text reaches these widgets only as plain option labels and escaped captions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard import queries
from finsent.dashboard.corrections import (
    KEEP,
    SENTIMENT_CHOICES,
    TOPIC_CHOICES,
    dashboard_correction,
    label_summary,
    save_correction,
)
from finsent.dashboard.safe import escape_text
from finsent.model.corrections import MAX_NAME, MAX_NOTE, CorrectionError

ANALYST = "_finsent_analyst"  # the name last used, kept for the session across pages
TITLE_CHARS = 110  # of a headline in the picker


def name_input(key: str) -> str:
    """The analyst's name field, filled with the name they last corrected under."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(ANALYST, "")
    return st.text_input(
        "Your name",
        key=key,
        max_chars=MAX_NAME,
        placeholder="who corrects",
        help="Stored with each correction; remembered while this tab is open.",
    )


def story_label(row: pd.Series) -> str:
    """A headline as a picker option: plain text on one line."""
    title = " ".join(str(row["title"]).split())
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1] + "…"
    return f"{ui.local(row['published_at']):%m-%d %H:%M} · {row['sentiment']} · {title}"


def model_call(story: pd.Series) -> str:
    return (
        f"The model said {story['sentiment']} {story['score']:+.2f} "
        f"(confidence {story['confidence']:.2f}), topic {story['topic']}; "
        f"model {story['model_version']}."
    )


def correction_form(url: str, stories: pd.DataFrame, prefix: str) -> None:
    """Pick one of ``stories`` (``id``, ``published_at``, ``sentiment``, ``title``), see what
    the model and analysts said of it, and correct its sentiment and/or topic."""
    if stories.empty:
        st.caption("No headline to correct here.")
        return
    options = {str(row["id"]): story_label(row) for _, row in stories.iterrows()}
    picked = st.selectbox(
        "Headline", list(options), format_func=options.__getitem__, key=f"{prefix}_story"
    )
    if picked is None:
        return
    stored = queries.load_stories(url, [picked])
    if stored.empty:
        st.warning("This story is no longer in the store.")
        return
    story = stored.iloc[0]
    current = queries.story_labels(url, [picked]).get(picked)
    st.caption(escape_text(model_call(story)))
    st.caption(escape_text(label_summary(current, ui.zone_name())))
    with st.form(f"{prefix}_form", border=True):
        sentiment_col, topic_col = st.columns(2)
        sentiment_col.selectbox(
            "Sentiment",
            SENTIMENT_CHOICES,
            key=f"{prefix}_sentiment",
            help="keep: leave it as it is.",
        )
        topic_col.selectbox(
            "Topic", TOPIC_CHOICES, key=f"{prefix}_topic", help="keep: leave it as it is."
        )
        name_col, note_col = st.columns(2)
        with name_col:
            name_input(f"{prefix}_by")
        note_col.text_input(
            "Note", key=f"{prefix}_note", max_chars=MAX_NOTE, placeholder="optional: why"
        )
        st.form_submit_button(
            "Save correction",
            on_click=submit_form,
            args=(url, prefix, picked),
            type="primary",
        )
    show_error(prefix)


def submit_form(url: str, prefix: str, story_id: str) -> None:
    """The form's callback: store the correction, or keep its error for the page to show."""
    state = st.session_state
    if correct(
        url,
        story_id,
        prefix,
        sentiment=state.get(f"{prefix}_sentiment", KEEP),
        topic=state.get(f"{prefix}_topic", KEEP),
        by=state.get(f"{prefix}_by", ""),
        note=state.get(f"{prefix}_note", ""),
    ):
        state[f"{prefix}_sentiment"] = KEEP
        state[f"{prefix}_topic"] = KEEP
        state[f"{prefix}_note"] = ""


def correct(
    url: str, story_id: str, prefix: str, *, sentiment: str, topic: str, by: str, note: str = ""
) -> bool:
    """Write one correction of a stored story; False with the error kept under ``prefix``
    (``show_error`` shows it) when the input is wrong."""
    if by.strip():
        st.session_state[ANALYST] = by.strip()
    stored = queries.load_stories(url, [story_id])
    if stored.empty:
        st.session_state[f"{prefix}_error"] = "This story is no longer in the store."
        return False
    try:
        correction = dashboard_correction(
            {str(name): value for name, value in stored.iloc[0].items()},
            sentiment=sentiment,
            topic=topic,
            by=by,
            note=note,
            now=datetime.now(UTC),
        )
    except CorrectionError as exc:
        st.session_state[f"{prefix}_error"] = str(exc)
        return False
    save_correction(url, correction)
    ui.forget_labels()
    changed = ", ".join(v for v in (correction.sentiment, correction.topic) if v)
    ui.flash(f"Saved: {escape_text(changed)}, by {escape_text(correction.by)}.")
    return True


def show_error(prefix: str) -> None:
    error = st.session_state.pop(f"{prefix}_error", None)
    if error:
        st.error(escape_text(error), icon=":material/error:")
