"""Silences: rules that mute notifications of matching alerts for a while.

A silenced alert is still detected and stored; only its notifications are held back. The CLI
(``finsent alerts silence``) and the dashboard's silence form both make one with
``new_silence``, so they accept and refuse the same input with the same messages; both list
them with ``active_silences`` and end one early with ``expire_silence``. Pure, with "now"
passed in.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from finsent.core.durations import format_duration, parse_duration
from finsent.core.records import Alert
from finsent.core.vocabulary import SEVERITIES, Severity

ANY_SEVERITY = "any"
# Longer is a mistake, not a silence: it would outlive any review of it (and far beyond, the
# end time leaves the calendar).
MAX_SILENCE = timedelta(days=366)


class SilenceError(ValueError):
    """Input that cannot make a silence; the message says what to change."""


@dataclass(frozen=True)
class Silence:
    matcher: str  # a glob over series keys
    starts_at: datetime
    ends_at: datetime
    severity: Severity | None = None  # None: any
    id: str = ""
    created_by: str = ""
    comment: str = ""

    def mutes(self, alert: Alert, now: datetime) -> bool:
        return (
            self.starts_at <= now < self.ends_at
            and fnmatch.fnmatchcase(alert.key, self.matcher)
            and (self.severity is None or self.severity == alert.severity)
        )

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def to_row(self) -> dict[str, Any]:
        """The row for ``Store.add_silence`` (the columns of the ``silences`` table)."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Silence:
        """A silence from its stored row (SQLite hands back naive times: the store keeps UTC)."""
        return cls(
            id=row["id"],
            matcher=row["matcher"],
            severity=row["severity"],
            starts_at=_utc(row["starts_at"]),
            ends_at=_utc(row["ends_at"]),
            created_by=row["created_by"],
            comment=row["comment"],
        )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def active_silences(rows: Iterable[Mapping[str, Any]], now: datetime) -> list[Silence]:
    """The stored silences in force at ``now``, ending soonest first (ties by id)."""
    silences = (Silence.from_row(row) for row in rows)
    return sorted((s for s in silences if s.active(now)), key=lambda s: (s.ends_at, s.id))


def expire_silence(rows: Iterable[Mapping[str, Any]], silence_id: str, now: datetime) -> Silence:
    """The silence ``silence_id`` among the stored ``rows``, ended at ``now``: upserted with
    ``Store.add_silence`` (same id), it mutes nothing from then on and leaves the active list.
    Text is trimmed. Raises ``SilenceError`` when no silence with that id is in force."""
    silence_id = silence_id.strip()
    for silence in active_silences(rows, now):
        if silence.id == silence_id:
            return replace(silence, ends_at=now)
    raise SilenceError(f"No active silence has the id {silence_id!r}.")


def new_silence(
    matcher: str,
    duration: str | timedelta,
    *,
    severity: str | None,
    author: str,
    comment: str,
    now: datetime,
) -> Silence:
    """A silence of ``matcher`` (a glob over series keys) from ``now`` for ``duration`` (the
    one duration grammar: ``30m``, ``2h``, ``1d``), of one severity, or of any with None or
    "any".

    Text is trimmed. Raises ``SilenceError`` for an empty matcher or author, a duration that
    does not parse, is not positive or is over ``MAX_SILENCE``, or an unknown severity. The id is a hash of the
    silence itself, so submitting the same one twice at the same instant stores it once.
    """
    matcher, author, comment = matcher.strip(), author.strip(), comment.strip()
    if not matcher:
        raise SilenceError("Say which series to silence (a glob such as ticker:*).")
    try:
        length = parse_duration(duration, positive=True)
    except ValueError as exc:  # its message quotes the input and shows the grammar
        raise SilenceError(str(exc)) from None
    if length > MAX_SILENCE:
        raise SilenceError(f"A silence lasts at most {format_duration(MAX_SILENCE)}.")
    if severity == ANY_SEVERITY:
        severity = None
    if severity is not None and severity not in SEVERITIES:
        raise SilenceError(f"The severity is {' or '.join(SEVERITIES)} (or {ANY_SEVERITY}).")
    if not author:
        raise SilenceError("Say who silences it.")
    ends_at = now + length
    basis = "|".join(
        (matcher, severity or "", now.isoformat(), ends_at.isoformat(), author, comment)
    )
    return Silence(
        id=hashlib.sha256(basis.encode()).hexdigest()[:16],
        matcher=matcher,
        severity=severity,  # narrowed to a Severity by the check above
        starts_at=now,
        ends_at=ends_at,
        created_by=author,
        comment=comment,
    )
