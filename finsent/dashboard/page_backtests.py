"""Backtests: the runs that replayed a feed through the stages, each with its report.

Runs are listed from the backtest registry, never the live store. A run's report folder (the
folder of its report.html) gives the summary, the known events hit or missed and the alerts
fired, all shown as data; report.html itself is only offered as a download, never rendered
here, since it quotes feed headlines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from finsent.dashboard import common as ui
from finsent.dashboard.tables import (
    backtest_alerts_table,
    backtest_events_table,
    backtest_summary,
    backtests_table,
)

REPORT_MAX_BYTES = 1_000_000  # a text report or summary.json read into the page
MAX_ROWS = 5_000  # rows of a report CSV shown
TEXT_REPORTS = {".md": "markdown", ".txt": None, ".log": None, ".csv": None, ".json": "json"}
TIME_FORMAT = "YYYY-MM-DD HH:mm:ss"

ui.page_start("Backtests", "Replays of a feed through the same stages, and what they alerted on.")


@st.fragment(run_every=ui.refresh_seconds())
def live() -> None:
    runs = ui.backtest_runs()
    if runs.empty:
        st.info("No backtest runs yet")
        return
    ui.table(
        backtests_table(runs, ui.zone_name()),
        "backtests",
        column_config={
            ui.time_label("Started"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            ui.time_label("Finished"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            "Report": st.column_config.TextColumn(help="The run's report file"),
        },
    )
    ids = runs["id"].tolist()
    started = dict(zip(runs["id"], runs["started_at"], strict=True))
    picked = st.selectbox(
        "Run",
        ids,
        format_func=lambda rid: f"{rid} · {ui.local(started[rid]):%Y-%m-%d %H:%M}",
        key="backtest_pick",
    )
    if picked is None:
        return
    run = runs[runs["id"] == picked].iloc[0]
    st.json(run["params"] or {}, expanded=False)
    show_report(str(picked), run["report_path"])


def show_report(run_id: str, path_text: Any) -> None:
    """The report's path, then its folder (report.html) or its text when it is a small text
    file here (shown as code, never rendered: a report quotes feed headlines)."""
    if not isinstance(path_text, str) or not path_text:  # a running run's is NULL: NaN here
        st.caption("No report yet.")
        return
    st.code(path_text, language=None)
    path = Path(path_text)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        show_folder(run_id, path)
        return
    try:
        if suffix not in TEXT_REPORTS or path.stat().st_size > REPORT_MAX_BYTES:
            return
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        st.caption("The report file is not readable from here.")
        return
    with st.expander("Report", expanded=True):
        st.code(text, language=TEXT_REPORTS[suffix], wrap_lines=True)


def report_table(
    title: str,
    path: Path,
    build: Callable[[pd.DataFrame], pd.DataFrame],
    key: str,
    empty: str,
    column_config: dict[str, Any],
) -> None:
    """One of the report's CSV tables, as data."""
    st.subheader(title)
    rows = report_rows(path)
    if rows is None:
        return
    if rows.empty:
        st.caption(empty)
    else:
        ui.table(build(rows), key, column_config=column_config)


def show_folder(run_id: str, html_path: Path) -> None:
    folder = html_path.parent
    if not folder.is_dir():
        st.caption("The report folder is not readable from here.")
        return
    show_summary(folder / "summary.json")

    report_table(
        "Known events",
        folder / "events.csv",
        partial(backtest_events_table, tz=ui.zone_name()),
        "backtest_events",
        "No known events were given for this run.",
        {
            ui.time_label("First alert"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            ui.time_label("Start"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            ui.time_label("End"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            "Lead (h)": st.column_config.NumberColumn(
                format="%.2f", help="Hours from the first alert to the event's start"
            ),
        },
    )
    report_table(
        "Alerts fired",
        folder / "alerts.csv",
        partial(backtest_alerts_table, tz=ui.zone_name()),
        "backtest_alerts",
        "This run fired no alerts.",
        {
            ui.time_label("Fired"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            ui.time_label("Window"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            ui.time_label("Resolved"): st.column_config.DatetimeColumn(format=TIME_FORMAT),
            "Z-score": st.column_config.NumberColumn(format="%.2f"),
            "Neg share": st.column_config.NumberColumn(format="percent"),
            "Headlines": st.column_config.TextColumn(width="large"),
        },
    )

    size = file_version(html_path)
    if size is None:
        st.caption(f"{html_path.name} is not readable from here.")
        return
    # The bytes are read on the click, not at every refresh tick of this fragment.
    st.download_button(
        "Download the HTML report",
        data=partial(read_bytes, html_path),
        file_name=f"backtest-{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}.html",
        mime="text/html",
        key="backtest_report",
        on_click="ignore",
    )
    st.caption(
        f"Charts and every table in one file ({size[1] / 1e6:,.1f} MB), to open in a browser."
    )


def show_summary(path: Path) -> None:
    summary = report_summary(path)
    if summary is None:
        return
    shown = backtest_summary(summary)
    for column, (label, text) in zip(st.columns(len(shown)), shown, strict=True):
        column.metric(label, text)


def report_summary(path: Path) -> dict[str, Any] | None:
    version = file_version(path)
    if version is None:
        st.caption(f"{path.name} is missing from the report folder.")
        return None
    try:
        if version[1] > REPORT_MAX_BYTES:
            raise ValueError("too large")
        summary = cached_json(str(path), version)
    except (OSError, ValueError):
        st.caption(f"{path.name} is not readable.")
        return None
    return summary


def report_rows(path: Path) -> pd.DataFrame | None:
    """A report CSV, or None after a caption saying why not."""
    version = file_version(path)
    if version is None:
        st.caption(f"{path.name} is missing from the report folder.")
        return None
    try:
        rows = cached_csv(str(path), version)
    except (OSError, ValueError):  # pandas' parse and decode errors are ValueErrors
        st.caption(f"{path.name} is not readable.")
        return None
    if len(rows) > MAX_ROWS:
        st.caption(f"The first {MAX_ROWS:,} rows of {path.name}; the HTML report has them all.")
        rows = rows.head(MAX_ROWS)
    return rows


def file_version(path: Path) -> tuple[int, int] | None:
    """(mtime, size): the cache key of a report file, so a rewritten file is read again."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if path.is_file() else None


# Cached per file version: the fragment refreshes every few seconds, the files rarely change.
@ui.cached(8)
def cached_csv(path: str, version: tuple[int, int]) -> pd.DataFrame:
    # As text, no NA guessing: a headline stays exactly what the feed said.
    return pd.read_csv(path, dtype=str, keep_default_na=False, nrows=MAX_ROWS + 1)


@ui.cached(8)
def cached_json(path: str, version: tuple[int, int]) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone since the page drew the button
        return b"The report file was not readable when it was asked for."


live()
