"""The finsent dashboard: eight pages over the store, most refreshed in place.

Launched by ``finsent dashboard`` as ``streamlit run dashboard/app.py`` with the FINSENT_*
environment set (bound to 127.0.0.1 unless told otherwise). This entry point sets up the page,
the sidebar's look-back and the navigation; each page is a script ``dashboard/page_*.py`` and
runs its live part in an ``st.fragment`` on the refresh timer, so a tick never reruns the page.

The page scripts sit beside this one, not in a ``pages/`` folder: Streamlit reads such a folder
as an old-style multipage app and, for a session that opens at a page's URL, runs that page
alone, without this entry point (no navigation, no sidebar). Beside it they also ship in the
``dashboard`` package as they are.

Feed text (titles, sources, words, links) reaches a page only as dataframe cells and a
picker's option labels, drawn as plain text, or as HTML built by ``dashboard.safe`` from text
escaped character by character.
"""

from __future__ import annotations

import streamlit as st

from finsent.dashboard import common as ui

st.set_page_config(page_title="finsent", layout="wide")

OVERVIEW = st.Page(
    "page_overview.py", title="Overview", url_path="overview", icon=":material/monitoring:"
)


def home() -> None:
    # The root URL opens the overview at its own address, so /overview works as a link and
    # the menu shows where one is. (A default page is served at / only.)
    st.switch_page(OVERVIEW)


PAGES = [
    st.Page(home, title="finsent", url_path="home", default=True, visibility="hidden"),
    OVERVIEW,
    st.Page("page_heatmap.py", title="Heatmap", url_path="heatmap", icon=":material/grid_on:"),
    st.Page(
        "page_alerts.py", title="Alerts", url_path="alerts", icon=":material/notifications_active:"
    ),
    st.Page(
        "page_headlines.py", title="Headlines", url_path="headlines", icon=":material/newspaper:"
    ),
    st.Page("page_tickers.py", title="Tickers", url_path="tickers", icon=":material/sell:"),
    st.Page(
        "page_backtests.py", title="Backtests", url_path="backtests", icon=":material/science:"
    ),
    st.Page("page_review.py", title="Review", url_path="review", icon=":material/rate_review:"),
    st.Page("page_models.py", title="Models", url_path="models", icon=":material/model_training:"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.selectbox(
        "Look back",
        list(ui.LOOKBACKS),
        index=list(ui.LOOKBACKS).index(ui.DEFAULT_LOOKBACK),
        key="lookback",
        help="Counted back from the newest story, so a replayed feed reads like a live one.",
    )
    configured = ui.settings().dashboard_tz
    zones = ui.time_zones()
    zones = zones if configured in zones else [configured, *zones]
    st.selectbox(
        "Time zone",
        zones,
        index=zones.index(configured),
        key=ui.TZ_KEY,
        help="Times on every page are shown in this zone (default: FINSENT_DASHBOARD_TZ); "
        "the stored data stays UTC.",
    )
    st.caption(f"Refreshes every {ui.refresh_seconds():g} s. Times are {ui.zone_name()}.")
    # `finsent dashboard` binds FINSENT_DASHBOARD_HOST (127.0.0.1 by default); a bare
    # `streamlit run` listens on every interface unless told otherwise. Say so.
    address = st.get_option("server.address")
    if address != ui.settings().dashboard_host:
        st.warning(
            f"Served on {address or 'every network interface'}, not "
            f"{ui.settings().dashboard_host}: start it with `finsent dashboard`.",
            icon=":material/lan:",
        )
page.run()
