from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finsent.runtime.store import Store, as_utc, backtest_runs

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_backtest_run_is_registered_then_finished_in_place(store: Store) -> None:
    running = {
        "id": "bt1",
        "started_at": T0,
        "finished_at": None,
        "feed": "replay.jsonl",
        "params": {"window_minutes": 15},
        "report_path": None,
        "alert_count": None,
        "status": "running",
    }
    store.save_backtest_run(running)
    finished = T0 + timedelta(minutes=3)
    done = {**running, "finished_at": finished, "report_path": "r.html", "alert_count": 4}
    store.save_backtest_run({**done, "status": "finished"})
    [row] = store.query(backtest_runs)
    assert (row["status"], row["alert_count"], row["params"]) == (
        "finished",
        4,
        {"window_minutes": 15},
    )
    assert as_utc(row["finished_at"]) == finished
