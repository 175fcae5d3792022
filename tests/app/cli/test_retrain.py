"""``finsent retrain``: a real (small) retrain whose deliberately worse candidate the gate
refuses, and the one-line errors before any training."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import SHARED_DATASETS
from typer.testing import CliRunner

from finsent.app.cli import app
from finsent.model.corrections import Correction
from finsent.runtime.store import Store

runner = CliRunner()
T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FINSENT_DATASETS_DIR", str(SHARED_DATASETS))
    return Store(url)


def correct(store: Store, count: int) -> None:
    store.add_labels(
        [
            Correction(
                story_id=f"s{n}",
                text=f"Brightwater Utilities cuts its dividend by {n + 10} percent",
                sentiment="negative",
                topic="Dividend",
                by="ann",
                at=T0 + timedelta(minutes=n),
                origin="cli",
            ).row()
            for n in range(count)
        ]
    )


def test_too_few_corrections_is_one_line(store: Store) -> None:
    correct(store, 1)
    result = runner.invoke(app, ["retrain", "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: retraining needs at least 2 corrected stories, and there are 1: correct "
        "headlines on the dashboard or with `finsent labels add|import`"
    ]


@pytest.mark.slow
@pytest.mark.weights
def test_a_deliberately_worse_candidate_is_refused_and_kept_out_of_service(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (SHARED_DATASETS / "financial_phrasebank").is_dir():
        pytest.skip("the training datasets are not beside the checkout")
    correct(store, 10)
    monkeypatch.setenv("FINSENT_RETRAIN_LR", "0.05")  # wrecks the encoder: a worse model
    report = tmp_path / "gate.json"
    result = runner.invoke(
        app,
        ["retrain", "--base-examples", "64", "--eval-limit", "60", "--no-progress", "--threads", "1",
         "--json", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "REFUSED" in result.output and "stays active" in result.output

    import json

    gate = json.loads(report.read_text(encoding="utf-8"))
    assert gate["passed"] is False and not gate["promoted"]
    failed = [c["name"] for c in gate["checks"] if not c["passed"]]
    assert any("sentiment macro_f1" in name for name in failed), gate["reasons"]
    assert len(gate["reasons"]) == len(failed)

    (row,) = store.model_versions()
    assert row["status"] == "refused" and row["version"] == gate["version"]
    assert Path(row["path"], "model-int8.onnx").is_file()  # kept, to inspect or force
    assert store.active_model() is None  # the shipped model still runs
    listing = runner.invoke(app, ["model", "list", "--json"])
    assert [v["active"] for v in json.loads(listing.output)] == [True, False]
