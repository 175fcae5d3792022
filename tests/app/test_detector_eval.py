"""Replaying a finished run's windows through the alerter, scored on known events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records import scored_item, window_stat

from finsent.app.backtest_report import EventsFile, KnownEvent
from finsent.app.detector_eval import (
    RunNotFound,
    UnknownSeries,
    explain_series,
    render,
    replay_detector,
    run_store,
)
from finsent.core.records import Headline
from finsent.core.settings import Settings
from finsent.runtime.store import Commit, Store

T0 = datetime(2023, 1, 2, tzinfo=UTC)
TICK = timedelta(minutes=15)


def _windows() -> list:
    """Two weeks of one neutral ACME story a day, then two bad ones within the hour."""
    quiet = [
        window_stat(key="ticker:ACME", window_start=T0 + i * TICK, count=1, neg_share=0.0)
        for i in range(0, 14 * 96, 96)
    ]
    bad = Headline(id="b1", title="Acme shares plunge", score=-0.9, sentiment="negative")
    burst = [
        window_stat(
            key="ticker:ACME",
            window_start=T0 + (14 * 96 + i) * TICK,
            count=1,
            neg_share=1.0,
            weighted_neg_share=1.0,
            top_headlines=(bad,),
        )
        for i in (0, 2)
    ]
    return [*quiet, *burst]


def test_a_runs_windows_replay_into_alerts_scored_on_its_events(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    store = Store(f"sqlite:///{run / 'store.db'}")
    crash = T0 + 14 * 96 * TICK + timedelta(minutes=5)
    story = scored_item(id="s1", title="Acme shares plunge", published_at=crash)
    store.commit(Commit(stage="aggregator", windows=_windows(), scored=[story]))
    store.close()
    settings = Settings(cache_dir=tmp_path / "cache", alert_keys=("ticker:*",))
    events = EventsFile(
        events=[
            KnownEvent(
                name="Acme crash",
                key=("ticker:ACME",),
                start=crash - timedelta(hours=1),
                end=crash + timedelta(days=1),
                story="Acme",
            )
        ]
    )

    result = replay_detector(settings, run_store(settings, str(run)), events)

    [fired] = [a for a in result.alerts if a.state == "firing"]
    assert fired.key == "ticker:ACME"
    assert [h.title for h in fired.headlines] == ["Acme shares plunge"]
    outcome = result.card.outcomes[0]
    assert outcome.hit and outcome.first_story_at == crash
    assert outcome.lead_hours is not None and -1.0 < outcome.lead_hours < 0.0
    assert result.windows == 16 and result.budget["alerts_per_week"] > 0
    assert "Acme crash" in render(result)


def test_an_unknown_run_is_one_clear_error(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    with pytest.raises(RunNotFound, match="no backtest run 'nope'"):
        run_store(settings, "nope")


def test_explaining_a_series_shows_each_scale_and_what_held_it_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    store = Store(f"sqlite:///{run / 'store.db'}")
    earlier = [
        window_stat(key="ticker:OTHER", window_start=T0 - timedelta(days=7) + i * TICK, count=1)
        for i in range(0, 7 * 96, 96)
    ]
    store.commit(Commit(stage="aggregator", windows=[*earlier, *_windows()]))
    store.close()
    settings = Settings(cache_dir=tmp_path / "cache", alert_keys=("ticker:*",))
    burst = T0 + 14 * 96 * TICK

    lines = explain_series(settings, run_store(settings, str(run)), "ticker:ACME", since=burst)
    replayed = replay_detector(settings, run_store(settings, str(run)), None).alerts

    assert lines[0].startswith("ticker:ACME: ")
    first, firing = lines[1], lines[5]
    assert first.startswith(f"{burst + TICK:%Y-%m-%d %H:%M} 1 story, 1 negative")
    assert "fewer than 2 negatives" in lines[2]  # one bad story is not yet a surge
    assert firing.endswith("** firing") and any("(fires)" in line for line in lines[6:9])
    assert len(lines) == 1 + 2 * 4  # two windows since the burst, three scales each
    # The same decision as the alerter's, which watches every series from the run's first
    # window (another series', a week before ACME's first story): the same z as well.
    [fired] = [a for a in replayed if a.state == "firing"]
    assert firing.startswith(f"{fired.window_end:%Y-%m-%d %H:%M} ")
    assert f"z {fired.zscore:5.2f}" in "\n".join(lines[6:9])
    before = explain_series(settings, run_store(settings, str(run)), "ticker:ACME", until=T0)
    assert before[1:] == ["(no window of ticker:ACME in that span)"]
    with pytest.raises(UnknownSeries, match="no window of 'ticker:NOPE'"):
        explain_series(settings, run_store(settings, str(run)), "ticker:NOPE")
