"""The backtest registry: one row per replay of a feed through the stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from finsent.runtime.store.engine import upsert
from finsent.runtime.store.schema import backtest_runs


def save_backtest_run(conn: Connection, row: Mapping[str, Any]) -> None:
    """Upsert one backtest run (keys: the columns of ``backtest_runs``)."""
    upsert(conn, backtest_runs, [row], ["id"])
