"""Fixtures for the store's tests: a store on SQLite and on a real PostgreSQL, and records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records import scored_item, window_stat

from finsent.core.records import ScoredItem, WindowStat
from finsent.runtime.store import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every case runs on the default SQLite store and on a real PostgreSQL (a fresh database;
    skipped where the server binaries are missing)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'nested' / 'store.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def _scored(i: int) -> ScoredItem:
    return scored_item(
        id=f"s{i}",
        title=f"story {i}",
        published_at=T0,
        topic="Markets",
        sentiment="neutral",
        score=0.0,
        confidence=0.5,
        model_version="t",
    )


def _window(version: int = 1, count: int = 3) -> WindowStat:
    return window_stat(
        key="overall", window_start=T0, window_end=T0 + W, count=count, version=version
    )


@pytest.fixture
def make_scored() -> Callable[[int], ScoredItem]:
    """Scored story number i (id ``s<i>``), published at T0."""
    return _scored


@pytest.fixture
def make_window() -> Callable[..., WindowStat]:
    """The overall window [T0, T0 + 15 min) at a version, with a count."""
    return _window
