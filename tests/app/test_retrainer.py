"""The retrainer's schedule: when enough stories were corrected since the last candidate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from finsent.app.retrainer import RetrainerConfig, ScheduleError, due, new_corrections, trigger

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def correction(story: str, minutes: int) -> dict[str, object]:
    return {"story_id": story, "at": T0 + timedelta(minutes=minutes)}


def test_counts_stories_corrected_since_the_newest_candidate() -> None:
    history = [correction("a", 0), correction("b", 10), correction("b", 20), correction("c", 30)]
    assert new_corrections(history, []) == 3  # no candidate yet: every corrected story
    versions = [{"created_at": T0 + timedelta(minutes=15)}, {"created_at": None}]
    assert new_corrections(history, versions) == 2  # b (again) and c
    assert due(history, versions, 2) and not due(history, versions, 3)


def test_a_cron_expression_is_checked_before_the_scheduler_starts() -> None:
    assert trigger(RetrainerConfig("0 3 * * *", 20)).get_next_fire_time(None, T0) == T0 + timedelta(
        hours=3
    )
    with pytest.raises(ScheduleError, match="FINSENT_RETRAIN_SCHEDULE 'every day'"):
        trigger(RetrainerConfig("every day", 20))
