"""Fixtures shared by the ingest tests: the loopback feed server and a fetcher for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.feed_server import FeedServer

from finsent.ingest.fetch import Fetcher


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    # Loopback servers: this fetcher opts in to non-public addresses.
    with Fetcher(read_timeout=5.0, trust_env=False, allow_private=True) as f:
        yield f
