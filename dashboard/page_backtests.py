"""Backtests: the runs that replayed a feed through the stages, each with its report."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import common as ui
from dashboard.tables import backtests_table

REPORT_MAX_BYTES = 1_000_000
TEXT_REPORTS = {".md": "markdown", ".txt": None, ".log": None, ".csv": None, ".json": "json"}

ui.page_start("Backtests", "Replays of a feed through the same stages, and what they alerted on.")


@st.fragment(run_every=ui.refresh_seconds())
def live() -> None:
    runs = ui.cached_backtests(ui.store_url())
    if runs.empty:
        st.info("No backtest runs yet")
        return
    ui.table(
        backtests_table(runs),
        "backtests",
        column_config={
            "Started (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "Finished (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "Report": st.column_config.TextColumn(help="The run's report file"),
        },
    )
    ids = runs["id"].tolist()
    started = dict(zip(runs["id"], runs["started_at"], strict=True))
    picked = st.selectbox(
        "Run",
        ids,
        format_func=lambda rid: f"{rid} · {started[rid]:%Y-%m-%d %H:%M}",
        key="backtest_pick",
    )
    if picked is None:
        return
    run = runs[runs["id"] == picked].iloc[0]
    st.json(run["params"] or {}, expanded=False)
    show_report(run["report_path"])


def show_report(path_text: str | None) -> None:
    """The report's path, and its text when it is a small text file here (shown as code,
    never rendered: a report quotes feed headlines)."""
    if not path_text:
        st.caption("No report yet.")
        return
    st.code(path_text, language=None)
    path = Path(path_text)
    suffix = path.suffix.lower()
    try:
        if suffix not in TEXT_REPORTS or path.stat().st_size > REPORT_MAX_BYTES:
            return
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        st.caption("The report file is not readable from here.")
        return
    with st.expander("Report", expanded=True):
        st.code(text, language=TEXT_REPORTS[suffix], wrap_lines=True)


live()
