"""Models: every model version of the registry, which one scores now, what the evaluation gate
said of each, how many stored stories each scored, and the promotions and rollbacks."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard.safe import escape_text
from finsent.dashboard.tables import models_table, promotions_table

ui.page_start(
    "Models",
    "The model versions `finsent retrain` made, the gate's verdict on each, and which one "
    "the scorers run. Promote and roll back with `finsent model`.",
)


@st.fragment(run_every=ui.refresh_seconds())
def live(lookback: timedelta | None) -> None:
    url = ui.store_url()
    tz = ui.zone_name()
    listing, problem = ui.cached_model_listing(url)
    if problem:
        st.warning(
            f"The default model's version cannot be read here ({escape_text(problem)}): "
            "only the registered versions are listed.",
            icon=":material/warning:",
        )
    view = ui.current_view(lookback)
    usage = ui.cached_model_usage(url, view.since if view else None)
    table = models_table(listing, usage, tz)
    active = table.loc[table["Active"], "Version"].tolist()
    if active:
        st.markdown(f"**Scoring now:** {escape_text(active[0])}")
    elif problem:
        st.caption("Scoring now: the default model.")
    period = "in the look-back" if view and view.since else "in the store"
    st.caption(
        f"Stories scored counts the stored stories published {period}, per model version "
        "(whatever backend ran it)."
    )
    ui.table(
        table,
        "models_table",
        column_config={
            "Active": st.column_config.CheckboxColumn(help="The version the scorers run."),
            "Reasons": st.column_config.TextColumn(width="large"),
        },
    )
    reports = {m["version"]: m.get("report") for m in listing if m.get("report")}
    if reports:
        with st.expander("Gate reports"):
            picked = st.selectbox("Version", list(reports), key="model_report_pick")
            if picked is not None:
                st.json(reports[picked], expanded=True)  # drawn as JSON text, never HTML
    promotions = ui.cached_promotions(url)
    st.subheader("Promotions and rollbacks")
    if not promotions:
        st.info("No promotion yet: the default model scores.")
        return
    ui.table(
        promotions_table(promotions, tz),
        "promotions_table",
        column_config={ui.time_label("At"): st.column_config.DatetimeColumn()},
    )


live(ui.lookback())
