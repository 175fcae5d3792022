"""Silences: the one constructor the CLI and the dashboard share, and what a silence mutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records import alert as make_alert

from finsent.alerts.silences import (
    Silence,
    SilenceError,
    active_silences,
    expire_silence,
    new_silence,
)
from finsent.core.records import Alert
from finsent.runtime.store import Store, silences

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def alert(key: str = "ticker:ACME", severity: str = "warning") -> Alert:
    return make_alert(id="a", key=key, severity=severity, window_start=NOW, updated_at=NOW)


def make(**changes: object) -> Silence:
    args: dict = {
        "matcher": "ticker:*",
        "duration": "2h",
        "severity": None,
        "author": "dana",
        "comment": "earnings season",
        "now": NOW,
    }
    args.update(changes)
    matcher, duration = args.pop("matcher"), args.pop("duration")
    return new_silence(matcher, duration, **args)


def test_a_new_silence_runs_from_now_for_its_duration() -> None:
    made = make(matcher="  ticker:* ", author=" dana ", comment=" why ", duration="1.5h")
    assert (made.matcher, made.created_by, made.comment) == ("ticker:*", "dana", "why")
    assert (made.starts_at, made.ends_at) == (NOW, NOW + timedelta(minutes=90))
    assert made.severity is None
    assert len(made.id) == 16
    assert make(duration=timedelta(minutes=5)).ends_at == NOW + timedelta(minutes=5)


def test_its_id_depends_on_what_it_says_only() -> None:
    assert make().id == make().id  # a double submit stores one silence
    assert make().id != make(comment="other").id
    assert make().id != make(now=NOW + timedelta(seconds=1)).id


@pytest.mark.parametrize(
    ("given", "stored"), [(None, None), ("any", None), ("critical", "critical")]
)
def test_severity_is_one_or_any(given: str | None, stored: str | None) -> None:
    assert make(severity=given).severity == stored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"matcher": "  "}, "Say which series"),
        ({"author": ""}, "Say who silences it"),
        ({"duration": "soon"}, "not a duration"),
        ({"duration": "0m"}, "must be above 0"),
        ({"duration": "-1h"}, "not a duration"),
        ({"severity": "fatal"}, "warning or critical"),
        ({"duration": "99999999999d"}, "too long"),  # beyond timedelta's range
        ({"duration": "9" * 400 + "s"}, "too long"),  # an infinite float
        ({"duration": "3000000d"}, "at most 366d"),  # would end past year 9999
        ({"duration": "367d"}, "at most 366d"),
        ({"duration": timedelta(days=367)}, "at most 366d"),
    ],
)
def test_bad_input_is_refused_with_a_reason(changes: dict, message: str) -> None:
    with pytest.raises(SilenceError, match=message):
        make(**changes)


def test_a_silence_mutes_matching_alerts_while_it_lasts() -> None:
    silence = make(severity="warning")
    assert silence.mutes(alert(), NOW)
    assert silence.mutes(alert(), NOW + timedelta(hours=2) - timedelta(seconds=1))
    assert not silence.mutes(alert(), NOW + timedelta(hours=2))  # ends exclusive
    assert not silence.mutes(alert(), NOW - timedelta(seconds=1))
    assert not silence.mutes(alert("topic:Macro"), NOW)
    assert not silence.mutes(alert(severity="critical"), NOW)


def test_its_row_is_what_the_store_keeps(tmp_path: Path) -> None:
    made = make(severity="critical")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.add_silence(made.to_row())
        [row] = store.query(silences)
        assert set(made.to_row()) == set(silences.columns.keys())
        assert (row["id"], row["matcher"], row["severity"], row["created_by"]) == (
            made.id,
            "ticker:*",
            "critical",
            "dana",
        )
        assert [r["id"] for r in store.active_silences(NOW + timedelta(hours=1))] == [made.id]
    finally:
        store.close()


def test_the_active_ones_come_from_stored_rows_ending_soonest_first() -> None:
    later, sooner = make(duration="2h"), make(duration="30m", comment="other")
    ended = make(now=NOW - timedelta(hours=3))
    coming = make(now=NOW + timedelta(hours=1))
    # As SQLite hands them back: naive UTC times.
    rows = [
        {**s.to_row(), "starts_at": s.starts_at.replace(tzinfo=None)}
        for s in (later, ended, sooner, coming)
    ]

    assert active_silences(rows, NOW) == [sooner, later]
    assert active_silences(rows, NOW + timedelta(hours=5)) == []


def test_expiring_a_silence_ends_it_now() -> None:
    silence = make()
    later = NOW + timedelta(minutes=10)

    ended = expire_silence([silence.to_row()], f" {silence.id} ", later)

    assert ended == Silence(**{**silence.to_row(), "ends_at": later})
    assert not ended.mutes(alert(), later) and active_silences([ended.to_row()], later) == []
    assert ended.mutes(alert(), later - timedelta(seconds=1))  # its past stays as it was


def test_only_an_active_silence_can_be_expired() -> None:
    silence = make()
    with pytest.raises(SilenceError, match="No active silence has the id 'nope'"):
        expire_silence([silence.to_row()], "nope", NOW)
    with pytest.raises(SilenceError, match="No active silence"):
        expire_silence([silence.to_row()], silence.id, NOW + timedelta(hours=2))


def test_an_expired_silence_upserts_over_its_stored_row(tmp_path: Path) -> None:
    made = make()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.add_silence(made.to_row())
        later = NOW + timedelta(minutes=10)
        store.add_silence(expire_silence(store.active_silences(later), made.id, later).to_row())
        [row] = store.query(silences)
        assert row["ends_at"].replace(tzinfo=UTC) == later
        assert store.active_silences(later) == []
    finally:
        store.close()
