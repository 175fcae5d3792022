"""``finsent alerts``: listing and exporting alerts, and listing and expiring silences, against
a temporary SQLite store."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records import T0, alert, headline
from typer.testing import CliRunner

from finsent.alerts.silences import new_silence
from finsent.app.cli import app
from finsent.runtime.store import Commit, Store, silences

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    return Store(url)


def two_alerts(store: Store) -> None:
    older = alert(
        id="old1",
        key="ticker:AAA",
        window_start=T0,
        headlines=(headline(title="=HYPERLINK(1) Acme falls"), headline(title="Beta too")),
    )
    newer = alert(id="new1", key="ticker:BBB", window_start=T0 + timedelta(hours=1))
    store.commit(Commit(stage="alerter", alerts=[older, newer]))
    store.acknowledge("old1", by="ana", comment="on it", at=T0 + timedelta(hours=2))


def test_an_empty_list_says_so(store: Store) -> None:
    result = runner.invoke(app, ["alerts", "list"])
    assert (result.exit_code, result.output) == (0, "no alerts\n")
    assert json.loads(runner.invoke(app, ["alerts", "list", "--json"]).output) == []


def test_the_list_as_json(store: Store) -> None:
    two_alerts(store)

    result = runner.invoke(app, ["alerts", "list", "--json", "--limit", "5"])

    assert result.exit_code == 0, result.output
    new, old = json.loads(result.output)
    assert (new["id"], new["key"], new["acked_by"]) == ("new1", "ticker:BBB", None)
    assert (old["id"], old["acked_by"], old["ack_comment"]) == ("old1", "ana", "on it")
    assert datetime.fromisoformat(old["window_start"]) == T0  # ISO 8601, with its zone
    assert [h["title"] for h in old["headlines"]] == ["=HYPERLINK(1) Acme falls", "Beta too"]


def test_export_as_csv_to_standard_output(store: Store) -> None:
    two_alerts(store)

    result = runner.invoke(app, ["alerts", "export"])

    assert result.exit_code == 0, result.output
    new, old = csv.DictReader(io.StringIO(result.output))
    assert (new["id"], old["id"], old["state"], old["acked_by"]) == (
        "new1",
        "old1",
        "firing",
        "ana",
    )
    assert new["acked_by"] == ""  # None is an empty cell
    assert datetime.fromisoformat(old["updated_at"]) == T0 + timedelta(minutes=15)
    # Feed text never runs as a spreadsheet formula.
    assert old["headlines"] == "'=HYPERLINK(1) Acme falls | Beta too"


def test_export_as_json_to_a_file(store: Store, tmp_path: Path) -> None:
    two_alerts(store)
    out = tmp_path / "alerts.json"

    result = runner.invoke(app, ["alerts", "export", "--format", "json", "--out", str(out)])

    assert (result.exit_code, result.output) == (0, f"wrote 2 alerts to {out}\n")
    listed = runner.invoke(app, ["alerts", "list", "--json"]).output
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(listed)


def test_export_to_a_folder_that_is_not_there_is_one_line(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "alerts.csv"
    result = runner.invoke(app, ["alerts", "export", "--out", str(out)])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith(f"error: cannot write {out}: ")


def test_silence_list_and_unsilence(store: Store) -> None:
    result = runner.invoke(app, ["alerts", "silences"])
    assert (result.exit_code, result.output) == (0, "no active silences\n")
    silence = ["alerts", "silence", "--by", "dana", "--match"]
    made = runner.invoke(
        app,
        [*silence, "ticker:*", "--for", "1h", "--severity", "critical", "--comment", "earnings"],
    )
    assert made.exit_code == 0, made.output
    assert runner.invoke(app, [*silence, "topic:*", "--for", "2h"]).exit_code == 0

    result = runner.invoke(app, ["alerts", "silences"])

    assert result.exit_code == 0, result.output
    soon, later = result.output.splitlines()  # ending soonest first
    assert "ticker:*" in soon and "critical" in soon and soon.endswith("by dana  earnings")
    assert "topic:*" in later and " any " in later
    [listed] = [
        s
        for s in json.loads(runner.invoke(app, ["alerts", "silences", "--json"]).output)
        if s["matcher"] == "ticker:*"
    ]
    assert listed["id"] == soon.split()[0] and listed["severity"] == "critical"
    assert made.output.startswith(f"silence {listed['id']}: ticker:* until ")

    result = runner.invoke(app, ["alerts", "unsilence", listed["id"]])

    assert (result.exit_code, result.output) == (0, f"expired silence {listed['id']}: ticker:*\n")
    remaining = runner.invoke(app, ["alerts", "silences"]).output.splitlines()
    assert len(remaining) == 1 and "topic:*" in remaining[0]
    [row] = [r for r in store.query(silences) if r["id"] == listed["id"]]
    assert row["ends_at"].replace(tzinfo=UTC) <= datetime.now(UTC)  # kept, but over


def test_unsilencing_an_unknown_or_ended_silence_is_one_line(store: Store) -> None:
    ended = new_silence(
        "ticker:*",
        "1h",
        severity=None,
        author="dana",
        comment="",
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    store.add_silence(ended.to_row())
    for silence_id in ("nope", ended.id):
        result = runner.invoke(app, ["alerts", "unsilence", silence_id])
        assert result.exit_code == 1
        assert result.output == f"error: No active silence has the id {silence_id!r}.\n"


def test_evaluate_detector_says_in_one_line_what_it_needs(tmp_path: Path) -> None:
    nothing = runner.invoke(app, ["evaluate-detector"])
    assert nothing.exit_code == 1 and "give --nab DIR, --run RUN, or both" in nothing.output
    events_alone = runner.invoke(app, ["evaluate-detector", "--events", str(tmp_path / "e.yaml")])
    assert events_alone.exit_code == 1 and "give --run RUN too" in events_alone.output
    unknown = runner.invoke(app, ["evaluate-detector", "--run", str(tmp_path / "no-such-run")])
    assert unknown.exit_code == 1 and "no backtest run" in unknown.output
    assert "Traceback" not in unknown.output
    explain_alone = runner.invoke(app, ["evaluate-detector", "--explain", "ticker:CS"])
    assert explain_alone.exit_code == 1 and "--explain replays a run" in explain_alone.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "store.db").touch()
    bad_time = ["evaluate-detector", "--run", str(run), "--explain", "ticker:CS", "--since", "soon"]
    bad = runner.invoke(app, bad_time)
    assert bad.exit_code == 1 and "--since 'soon' is not an ISO time" in bad.output
