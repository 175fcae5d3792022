"""The alerter's detector replayed over a finished backtest's windows, scored on known events.

``finsent evaluate-detector --run RUN --events FILE``: the run's store keeps every window the
aggregator closed; the same ``Alerter`` logic the live stage runs (its rule, the rules file, the
watchlist, from this process's settings) judges them again in event order, without scoring a
story anew. Thresholds can so be tried in seconds; a backtest with the chosen ones confirms.
``--explain KEY`` shows, window by window, why one series did or did not fire: each scale's
negatives against what its baseline expects, its z, and the guards that held it back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finsent.alerts.alerter import Alerter, AlerterConfig
from finsent.alerts.detector import SeriesState, evaluate
from finsent.app.backtest import story_times
from finsent.app.backtest_report import (
    EventsFile,
    Scorecard,
    alert_budget,
    first_stories,
    score_events,
)
from finsent.core.durations import format_duration
from finsent.core.errors import UserError
from finsent.core.records import Alert, WindowStat, decode
from finsent.core.settings import Settings
from finsent.runtime.runner import Message
from finsent.runtime.store import Store, as_utc, windows
from finsent.runtime.testing import MemoryDeadLetters

_TOPIC = "sentiment.windows"


class RunNotFound(UserError):
    """The backtest run named has no store to replay."""


@dataclass(frozen=True)
class ReplayResult:
    alerts: list[Alert]
    card: Scorecard
    budget: dict[str, Any]
    windows: int


def run_store(settings: Settings, run: str) -> Path:
    """The store of a run, by its id (under the cache's backtests) or its folder."""
    folder = Path(run)
    if not folder.is_dir():
        folder = settings.cache_dir / "backtests" / run
    path = folder / "store.db"
    if not path.is_file():
        raise RunNotFound(
            f"no backtest run {run!r}: give the run id `finsent backtest` printed (the"
            " dashboard's Backtests page lists them) or the run's folder"
        )
    return path


def stored_windows(store: Store, size: timedelta, key: str | None = None) -> list[WindowStat]:
    """The run's final windows of one size (of one series' ``key`` if given), the last
    restatement of each, in event order."""
    latest: dict[tuple[str, datetime], dict[str, Any]] = {}
    where = [windows.c.size_seconds == int(size.total_seconds())]
    if key is not None:
        where.append(windows.c.key == key)
    for row in store.query(windows, *where):
        if not row["final"]:
            continue
        at = (row["key"], as_utc(row["window_start"]))
        if at not in latest or row["version"] > latest[at]["version"]:
            latest[at] = row
    found = [_window(row) for row in latest.values()]
    found.sort(key=lambda w: (w.window_end, w.key))
    return found


def _window(row: dict[str, Any]) -> WindowStat:
    fields = {
        k: row[k]
        for k in (
            "key",
            "count",
            "weighted_count",
            "mean_score",
            "weighted_mean_score",
            "neg_share",
            "pos_share",
            "weighted_neg_share",
            "top_headlines",
            "version",
            "final",
        )
    }
    fields.update(
        window_start=as_utc(row["window_start"]).isoformat(),
        window_end=as_utc(row["window_end"]).isoformat(),
        emitted_at=as_utc(row["emitted_at"]).isoformat(),
        # The store keeps a window's strongest stories, not its evidence: its negative ones
        # stand in (the decisions do not depend on them, only what an alert shows).
        evidence=[h for h in row["top_headlines"] if h.get("sentiment") == "negative"],
    )
    return decode(WindowStat, json.dumps(fields, default=str))


def replay_detector(
    settings: Settings, store_path: Path, events: EventsFile | None
) -> ReplayResult:
    """Judge the run's windows with this process's alerter settings, and score the alerts.
    As in a backtest, an alert never resolves for want of data: a feed's gaps are not a
    live series going quiet."""
    config = AlerterConfig.from_settings(settings.model_copy(update={"alert_no_data_windows": 0}))
    scratch = Store("sqlite://")  # the alerter's state lives here, not in the run's store
    alerter = Alerter(config, scratch)
    run = Store(f"sqlite:///{store_path}")
    try:
        found = stored_windows(run, config.window.size)
        period, negatives = story_times(run)
    finally:
        run.close()
    batch = [Message(value=w, topic=_TOPIC, partition=0, offset=i) for i, w in enumerate(found)]
    alerter.assigned([(_TOPIC, 0)])
    # The live stage logs each alert it raises; a replay reports them all at the end instead.
    stage_log = logging.getLogger("finsent.alerts.alerter")
    level = stage_log.level
    stage_log.setLevel(logging.ERROR)
    try:
        outputs, _commit = alerter.process(batch, datetime.now(UTC), MemoryDeadLetters("alerter"))
    finally:
        stage_log.setLevel(level)
    scratch.close()
    alerts = [a for _, a in outputs]
    match_before = timedelta(hours=events.match_before_hours) if events else timedelta(hours=24)
    known = events.events if events else []
    card = score_events(known, alerts, match_before, first_stories(known, negatives))
    return ReplayResult(alerts, card, alert_budget(card.fired, period), len(found))


def explain_series(
    settings: Settings,
    store_path: Path,
    key: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """One series' windows judged as the alerter judges them (its rule for ``key``, watched
    from the run's first window), one line per window between ``since`` and ``until`` and one
    per scale under it. Raises ``UnknownSeries`` if the run has no window of ``key``."""
    config = AlerterConfig.from_settings(settings)
    rule = config.rules.rule_for(key, config.rule)
    run = Store(f"sqlite:///{store_path}")
    try:
        own = stored_windows(run, config.window.size, key)
        # The alerter counts every series as watched, and quiet, from the run's first window.
        first = run.query(
            windows,
            windows.c.size_seconds == int(config.window.size.total_seconds()),
            windows.c.final.is_(True),
            order_by=[windows.c.window_start],
            limit=1,
        )
    finally:
        run.close()
    if not own:
        raise UnknownSeries(f"the run has no window of {key!r}: keys look like ticker:AAPL")
    origin = as_utc(first[0]["window_start"])
    state = SeriesState()
    lines = [
        f"{key}: each window's end, then per scale the novelty-weighted negative stories of that"
        f" span, what the baseline expects, the baseline's negative share, and z (corrected for"
        f" {len(rule.scales)} scales; fires at {rule.fire_z:g} once every guard holds)"
    ]
    for window in own:
        result = evaluate(rule, state, window, window.window_end, origin=origin, explain=True)
        state = result.state
        if (since and window.window_end < since) or (until and window.window_end > until):
            continue
        event = f"  ** {result.event.state}" if result.event else ""
        negatives = round(window.neg_share * window.count)
        stories = "1 story" if window.count == 1 else f"{window.count} stories"
        lines.append(f"{window.window_end:%Y-%m-%d %H:%M} {stories}, {negatives} negative{event}")
        for v in result.verdicts:
            held = "fires" if v.passes and v.zscore >= rule.fire_z else "; ".join(v.blocked_by)
            if not held:
                held = f"z under {rule.fire_z:g}"
            lines.append(
                f"    {format_duration(v.scale):>4}: {v.negatives:5.2f} negative of"
                f" {v.stories:5.2f}, expected {v.expected:6.3f}, share {v.share:.2f}"
                f" -> z {v.zscore:5.2f}  ({held})"
            )
    if len(lines) == 1:
        lines.append(f"(no window of {key} in that span)")
    return lines


class UnknownSeries(UserError):
    """The run has no window of the series asked about."""


def render(result: ReplayResult) -> str:
    lines = [
        f"{result.windows:,} windows judged: {result.card.fired} alerts"
        + (f", {result.budget['alerts_per_week']} a week" if result.budget else ""),
    ]
    if result.card.outcomes:
        lines.append("")
        lines.append(f"  {'event':<40} {'first story':<17} {'first alert':<17} {'hours':>7}")
        for o in result.card.outcomes:
            story = o.first_story_at.strftime("%Y-%m-%d %H:%M") if o.first_story_at else "-"
            alert = o.first_alert_at.strftime("%Y-%m-%d %H:%M") if o.first_alert_at else "miss"
            hours = "" if o.lead_hours is None else f"{-o.lead_hours:+.1f}"
            lines.append(f"  {o.event.name[:40]:<40} {story:<17} {alert:<17} {hours:>7}")
        lines.append(f"  hits: {result.card.hits} of {len(result.card.outcomes)}")
        lines.append("  hours: from the event's first story to its first alert")
    return "\n".join(lines)


def fired_rows(alerts: Sequence[Alert]) -> list[str]:
    return [
        f"{a.updated_at:%Y-%m-%d %H:%M} {a.key} z={a.zscore:.1f}: "
        + " | ".join(h.title for h in a.headlines[:3])
        for a in alerts
        if a.state == "firing"
    ]
