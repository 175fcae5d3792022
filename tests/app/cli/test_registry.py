"""``finsent model``: listing versions, promoting and rolling back, against a temporary SQLite
store and registry folder holding two versions besides the shipped one."""

from __future__ import annotations

import getpass
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.model_versions import SHIPPED_VERSION, register_fake
from typer.testing import CliRunner

from finsent.app.cli import app
from finsent.core.settings import Settings
from finsent.model.registry import ModelRegistry, RegistryConfig
from finsent.runtime.store import Store

runner = CliRunner()
MADE = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
FIRST, SECOND, REFUSED = "finsent-attn-1+first", "finsent-attn-1+second", "finsent-attn-1+bad"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FINSENT_MODEL_ARTIFACT", raising=False)
    made = ModelRegistry(Store(url), RegistryConfig.from_settings(Settings()))
    register_fake(made, tmp_path / "new", FIRST, now=MADE)
    register_fake(made, tmp_path / "new", SECOND, now=MADE + timedelta(days=1))
    register_fake(
        made,
        tmp_path / "new",
        REFUSED,
        now=MADE + timedelta(days=2),
        status="refused",
        report={"passed": False, "reasons": ["[financial_phrasebank] sentiment macro-F1 -0.031"]},
    )
    return made


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def one_error(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def active(registry: ModelRegistry) -> str:
    [row] = [r for r in registry.listing() if r["active"]]
    return str(row["version"])


def test_promote_twice_then_roll_back_down_to_the_default(registry: ModelRegistry) -> None:
    assert ok("model", "promote", FIRST, "--by", "ann") == (
        f"promoted {FIRST} (was {SHIPPED_VERSION})\n"
    )
    assert ok("model", "promote", SECOND, "--by", "ann", "--reason", "more Fed") == (
        f"promoted {SECOND} (was {FIRST})\n"
    )
    assert active(registry) == SECOND

    assert ok("model", "rollback", "--by", "bo") == f"rolled back {SECOND} → {FIRST}\n"
    assert active(registry) == FIRST
    assert ok("model", "rollback", "--by", "bo") == f"rolled back {FIRST} → {SHIPPED_VERSION}\n"
    assert active(registry) == SHIPPED_VERSION

    assert one_error("model", "rollback") == (
        f"error: nothing to roll back: the default model {SHIPPED_VERSION} is active"
    )
    promotions = registry.store.model_promotions()
    assert [(p["kind"], p["version"], p["previous"], p["by"]) for p in promotions] == [
        ("promote", FIRST, SHIPPED_VERSION, "ann"),
        ("promote", SECOND, FIRST, "ann"),
        ("rollback", FIRST, SECOND, "bo"),
        ("rollback", None, FIRST, "bo"),
    ]
    assert promotions[1]["reason"] == "more Fed"


def test_the_list_shows_every_version_the_active_one_and_the_gates_verdict(
    registry: ModelRegistry,
) -> None:
    ok("model", "promote", FIRST, "--by", "ann")

    lines = runner.invoke(app, ["model", "list"], env={"COLUMNS": "200"}).output.splitlines()

    header, default, first, second, refused = lines
    assert header.split() == ["version", "status", "created", "promoted", "corrections", "gate"]
    assert default.split() == [SHIPPED_VERSION, "default", "0"]
    marker, version, status, created, at, promoted, _, corrections, gate = first.split()
    assert (marker, version, status, created, at) == ("*", FIRST, "passed", "2026-03-10", "14:30")
    assert datetime.fromisoformat(promoted).date() >= MADE.date()
    assert (corrections, gate) == ("12", "passed")
    assert second.split() == [SECOND, "passed", "2026-03-11", "14:30", "12", "passed"]
    assert refused.split()[:2] == [REFUSED, "refused"]
    assert refused.endswith("refused: [financial_phrasebank] sentiment macro-F1 -0.031")

    listed = json.loads(ok("model", "list", "--json"))
    assert [(v["version"], v["status"], v["active"]) for v in listed] == [
        (SHIPPED_VERSION, "default", False),
        (FIRST, "passed", True),
        (SECOND, "passed", False),
        (REFUSED, "refused", False),
    ]
    assert datetime.fromisoformat(listed[1]["created_at"]) == MADE
    assert listed[1]["promoted_at"] is not None and listed[2]["promoted_at"] is None
    assert listed[3]["report"]["passed"] is False


def test_a_refused_version_is_promoted_only_with_force(registry: ModelRegistry) -> None:
    assert one_error("model", "promote", REFUSED) == (
        f"error: the evaluation gate refused {REFUSED} (refused: [financial_phrasebank] "
        "sentiment macro-F1 -0.031); give --force to promote it"
    )
    assert active(registry) == SHIPPED_VERSION

    ok("model", "promote", REFUSED, "--force", "--reason", "we know")

    assert active(registry) == REFUSED


def test_promoting_what_cannot_run_is_one_line(registry: ModelRegistry) -> None:
    assert one_error("model", "promote", "finsent-attn-1+nope") == (
        "error: no model version 'finsent-attn-1+nope'; `finsent model list` shows the 4 there are"
    )
    assert one_error("model", "promote", SHIPPED_VERSION) == (
        f"error: {SHIPPED_VERSION} is already the active model"
    )
    shutil.rmtree(registry.path_of(SECOND))
    assert "config.json missing" in one_error("model", "promote", SECOND)
    assert registry.store.model_promotions() == []


def test_by_defaults_to_the_user_name(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "dana")
    ok("model", "promote", FIRST)

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    ok("model", "rollback")
    assert [p["by"] for p in registry.store.model_promotions()] == ["dana", "cli"]
