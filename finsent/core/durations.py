"""The one duration grammar (windows, alert rules, silences) and the window shape built on it.

A duration is a number and a unit: ``500ms``, ``30s``, ``15m``, ``1.5h``, ``7d``; a bare number
(as YAML gives it) is seconds. Windows take whole seconds and start on multiples of their hop
counted from the Unix epoch, so every process puts a timestamp in the same window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object, *, positive: bool = False) -> timedelta:
    """``30s``, ``5m``, ``4h``, ``1.5d``, or a number of seconds; ``positive`` refuses zero.

    ``ValueError`` for anything else, including a length no ``timedelta`` holds."""
    try:
        if isinstance(value, timedelta):
            length = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            length = timedelta(seconds=value)
        else:
            match = _DURATION.fullmatch(str(value).strip())
            if not match:
                raise ValueError(f"{value!r} is not a duration like 30s, 15m, 4h or 1d")
            length = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except OverflowError:  # beyond timedelta's range (about 2.7 million years), or infinite
        raise ValueError(f"{value!r}: the duration is too long") from None
    if length < timedelta(0) or (positive and length == timedelta(0)):
        raise ValueError(f"{value!r}: the duration must be {'above' if positive else 'at least'} 0")
    return length


def format_duration(length: timedelta) -> str:
    """The shortest whole-unit text for ``length`` (``90m`` → ``90m``, ``2h`` → ``2h``)."""
    seconds = length.total_seconds()
    for unit in ("d", "h", "m", "s"):
        n = _UNIT_SECONDS[unit]
        if seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{round(seconds * 1000)}ms"


def window_start(ts: datetime, size: timedelta) -> datetime:
    return EPOCH + ((ts - EPOCH) // size) * size


@dataclass(frozen=True, order=True)
class WindowSpec:
    """A tumbling window (hop == size) or a hopping one (hop < size, a divisor of it)."""

    size: timedelta
    hop: timedelta

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """``15m`` is tumbling; ``1h/5m`` is one hour long, starting every five minutes."""
        size_text, _, hop_text = text.partition("/")
        size = _window_length(size_text, text)
        hop = _window_length(hop_text, text) if hop_text else size
        if hop > size or size % hop:
            raise ValueError(f"window {text!r}: the hop must divide the size")
        return cls(size=size, hop=hop)

    @property
    def name(self) -> str:
        if self.hop == self.size:
            return format_duration(self.size)
        return f"{format_duration(self.size)}/{format_duration(self.hop)}"

    def bounds(self, ts: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) of every window of this spec that contains ``ts``."""
        start = window_start(ts, self.hop)
        while start + self.size > ts:
            yield start, start + self.size
            start -= self.hop


def _window_length(text: str, spec: str) -> timedelta:
    try:
        length = parse_duration(text.strip(), positive=True)
    except ValueError:
        raise ValueError(
            f"bad window {spec!r}: use a positive duration such as 15m, 1h or 1h/5m"
        ) from None
    if length.total_seconds() % 1:
        raise ValueError(f"bad window {spec!r}: windows are whole seconds")
    return length
