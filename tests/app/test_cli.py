from __future__ import annotations

from pathlib import Path

import pytest
from support.stages import free_port
from typer.testing import CliRunner

from finsent.app.cli import app

runner = CliRunner()


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("kafka", "ingest", "scorer", "aggregator", "alerter", "dashboard", "demo"):
        assert command in result.output


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_bad_speed_is_a_clear_error(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    result = runner.invoke(app, ["ingest", "replay", str(feed), "--speed", "fast"])
    assert result.exit_code == 1
    assert "--speed takes 'max' or a number" in result.output


def test_kafka_status_says_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FINSENT_KAFKA_PORT", str(free_port()))
    result = runner.invoke(app, ["kafka", "status"])
    assert result.exit_code == 1
    assert "Kafka not running at 127.0.0.1:" in result.output


def test_sample_feed_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    result = runner.invoke(app, ["sample-feed", str(out), "--hours", "2"])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert f"wrote {len(lines)} stories" in result.output and len(lines) > 50


def test_backtest_periods_read_dates_and_times_in_utc() -> None:
    from datetime import UTC, datetime

    from finsent.app.cli import _when

    assert _when(None, "--from") is None
    assert _when("2023-03-01", "--from") == datetime(2023, 3, 1, tzinfo=UTC)
    assert _when("2023-03-31", "--to", end_of_day=True) == datetime(2023, 4, 1, tzinfo=UTC)
    assert _when("2023-03-31T12:00", "--to", end_of_day=True) == datetime(
        2023, 3, 31, 12, tzinfo=UTC
    )
    assert _when("2023-03-01T09:00+02:00", "--from") == datetime(2023, 3, 1, 7, tzinfo=UTC)


def test_backtest_refuses_a_bad_period_and_a_missing_feed(tmp_path: Path) -> None:
    result = runner.invoke(app, ["backtest", "--feed", str(tmp_path), "--from", "March"])
    assert result.exit_code == 1 and "--from takes an ISO date" in result.output
    result = runner.invoke(app, ["backtest", "--feed", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1 and "does not exist" in result.output
