"""What a source hands to normalization: a story as found, before any cleaning.

Feed and API pollers and the replay reader all produce `RawStory`s (or `IngestError`s for what
they cannot read); `ingest.normalize` turns a `RawStory` into a `NewsItem`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

EXCERPT_BYTES = 2048  # how much of a bad payload a dead letter keeps


@dataclass(frozen=True, slots=True)
class RawStory:
    source: str  # the configured source name, e.g. "cnbc-top"
    title: str  # as found: may hold HTML, entities, odd whitespace
    url: str = ""
    summary: str = ""  # description / body as found
    published: str | datetime | None = None  # a raw date string, a datetime, or nothing
    tickers: tuple[str, ...] = ()  # symbols the source itself states (e.g. RSS symbol categories)
    raw: bytes = b""  # an excerpt of the payload it came from, for dead letters


class IngestError(Exception):
    """Input that cannot become a story: the reason, the source and a raw excerpt for the DLQ."""

    def __init__(self, source: str, reason: str, raw: bytes = b"") -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.raw = raw[:EXCERPT_BYTES]
