"""Review: the uncorrected stories most worth an analyst's look, with one-click corrections.

Ranked by ``dashboard.review`` (its doc gives the weights): stories that drove a firing alert
first, then those where the lexicon baseline or the keyword topic tagger disagrees with the
model, or where the model was unsure. A corrected story leaves the queue. The queue is not
redrawn on the refresh timer, so a row never moves under the pointer; it follows the sidebar's
look-back and is recomputed after each correction.
"""

from __future__ import annotations

import streamlit as st

from finsent.core.vocabulary import SENTIMENTS
from finsent.dashboard import common as ui
from finsent.dashboard.correction_form import correct, name_input, show_error
from finsent.dashboard.corrections import KEEP
from finsent.dashboard.review import ReviewWeights
from finsent.dashboard.safe import escape_text, headline_html
from finsent.dashboard.tables import review_table
from finsent.model.topics import TOPICS

ONE_CLICK_ROWS = 20  # the top of the queue, each with its buttons
PREFIX = "rv"
WEIGHTS = ReviewWeights()

ui.page_start(
    "Review",
    "Uncorrected stories most worth a look: evidence of firing alerts first, then where the "
    "baselines disagree with the model or the model was unsure. One click corrects one.",
)


def set_sentiment(url: str, story_id: str, sentiment: str) -> None:
    by = st.session_state.get(f"{PREFIX}_by", "")
    correct(url, story_id, PREFIX, sentiment=sentiment, topic=KEEP, by=by)


def set_topic(url: str, story_id: str) -> None:
    by = st.session_state.get(f"{PREFIX}_by", "")
    topic = st.session_state.get(f"{PREFIX}_topic_{story_id}", KEEP)
    correct(url, story_id, PREFIX, sentiment=KEEP, topic=topic, by=by)


url = ui.store_url()
view = ui.current_view(ui.lookback())
name_col, _ = st.columns([1, 2])
with name_col:
    name_input(f"{PREFIX}_by")
show_error(PREFIX)
if view is None:
    st.info("Waiting for data: nothing has been scored yet.")
    st.stop()
queue, with_lexicon = ui.cached_review_queue(url, view.since)
if not with_lexicon:
    st.caption(
        "The lexicon baseline is not installed (pip install 'finsent[lexicon]'): "
        "sentiment disagreement is left out of the ranking."
    )
if queue.empty:
    st.info(f"Nothing to review in the last {ui.lookback_label()}: no uncorrected story there "
            "drove an alert, split the baselines or left the model unsure.")  # fmt: skip
    st.stop()
st.caption(
    f"{len(queue):,} {'story' if len(queue) == 1 else 'stories'} of the last "
    f"{ui.lookback_label()}, best first. Score: "
    f"{WEIGHTS.alert:g} for evidence of a firing alert, {WEIGHTS.polarity_flip:g} when the "
    f"lexicon reads the opposite polarity ({WEIGHTS.sentiment:g} when one says neutral), up "
    f"to {WEIGHTS.low_confidence:g} for a confidence under {WEIGHTS.confidence_threshold:g}, "
    f"{WEIGHTS.topic:g} when the keywords name another topic."
)
for i, row in enumerate(queue.head(ONE_CLICK_ROWS).itertuples()):
    story_id = str(row.id)
    with st.container(key=f"{PREFIX}_row_{i}", border=True):
        text_col, sentiment_col, topic_col = st.columns([4, 4, 3], vertical_alignment="center")
        # Safe: every piece of feed text in this HTML went through dashboard.safe's escaping.
        text_col.markdown(
            headline_html(
                row.title,
                url=row.url,
                meta=f"{row.source} · {row.sentiment} {row.score:+.2f} · {row.topic} · "
                f"confidence {row.confidence:.2f}",
            ),
            unsafe_allow_html=True,
        )
        text_col.caption(escape_text(f"{row.review_score:.1f}: {row.why}"))
        for cell, sentiment in zip(sentiment_col.columns(3), SENTIMENTS, strict=True):
            cell.button(
                sentiment,
                key=f"{PREFIX}_{sentiment}_{story_id}",
                on_click=set_sentiment,
                args=(url, story_id, sentiment),
                type="primary" if sentiment == row.sentiment else "secondary",
                help=f"Label it {sentiment}"
                + (" (confirms the model's call)." if sentiment == row.sentiment else "."),
            )
        pick_col, apply_col = topic_col.columns([3, 1], vertical_alignment="bottom")
        pick_col.selectbox(
            "Topic",
            TOPICS,
            index=TOPICS.index(row.topic) if row.topic in TOPICS else 0,
            key=f"{PREFIX}_topic_{story_id}",
            label_visibility="collapsed",
        )
        apply_col.button(
            "Set",
            key=f"{PREFIX}_apply_{story_id}",
            on_click=set_topic,
            args=(url, story_id),
            help="Label it with the topic on the left.",
        )
with st.expander(f"The whole queue ({len(queue):,}) as a table"):
    ui.table(
        review_table(queue, ui.zone_name()),
        "review_table",
        column_config={
            **ui.headline_columns(),
            "Review score": st.column_config.NumberColumn(format="%.1f"),
            "Confidence": st.column_config.NumberColumn(format="%.2f"),
            "Why": st.column_config.TextColumn(width="large"),
        },
    )
