"""The bindings: every declared stage has exactly one logic, and the CLI offers every stage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer.main

from finsent.app.cli import app
from finsent.app.stages import CONSUMING, SOURCES, StageError, run
from finsent.core.settings import Settings
from finsent.core.stages import STAGE_NAMES, consumers, stage
from finsent.ingest.admit import Admission
from finsent.runtime.store import Store
from finsent.runtime.testing import MemoryDeadLetters

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_declared_stage_has_exactly_one_binding() -> None:
    assert not set(CONSUMING) & set(SOURCES)
    assert sorted([*CONSUMING, *SOURCES]) == sorted(STAGE_NAMES)
    assert list(CONSUMING) == [spec.name for spec in consumers()]
    assert all(stage(name).source is None for name in SOURCES)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store_url=f"sqlite:///{tmp_path / 'store.db'}", cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["router", "aggregator", "alerter", "notifier"])
def test_store_stage_factories_make_logic_the_runner_can_drive(
    name: str, settings: Settings
) -> None:
    store = Store(settings.database_url)
    logic = CONSUMING[name](settings, store)

    logic.assigned([(stage(name).source or "", 0)])  # loads its state from the store
    outputs, _commit = logic.process([], T0, MemoryDeadLetters(name))

    assert outputs == []
    with pytest.raises(ValueError, match="given none"):
        CONSUMING[name](settings, None)


def test_the_scorer_adds_per_company_sentiment_to_the_attention_model_only(
    settings: Settings,
) -> None:
    from finsent.model.scorer import LexiconScorer
    from finsent.stream.scoring import Scoring

    lexicon = CONSUMING["scorer"](settings.model_copy(update={"scorer": "lexicon"}), None)
    assert isinstance(lexicon, Scoring) and isinstance(lexicon.scorer, LexiconScorer)
    assert lexicon.entities is None


@pytest.mark.weights
def test_the_attention_scorer_finds_companies_as_the_tagger_does(settings: Settings) -> None:
    from finsent.ingest.tickers import company_index
    from finsent.model.entity_sentiment import EntityScorer
    from finsent.stream.scoring import Scoring

    logic = CONSUMING["scorer"](settings.model_copy(update={"scorer": "attention"}), None)
    assert isinstance(logic, Scoring) and isinstance(logic.entities, EntityScorer)
    title = "Nvidia surges as Intel sinks"
    assert logic.entities.find_names(title) == company_index().find_names(title)


def test_the_ingest_binding_is_the_logic_both_feeds_use(settings: Settings) -> None:
    admission = SOURCES["ingest"](settings)
    try:
        assert isinstance(admission, Admission)
    finally:
        admission.close()


def test_a_bad_rules_file_is_a_stage_error_not_a_traceback(
    settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("routes: [{channels: [nowhere]}]\n", encoding="utf-8")
    bad = settings.model_copy(update={"alert_rules_file": rules})

    with pytest.raises(StageError, match="nowhere"):  # before any broker is asked
        run("notifier", bad, threading.Event())


def test_the_cli_has_a_command_per_stage_described_by_its_declaration() -> None:
    group = typer.main.get_group(app)
    for spec in consumers():
        assert group.commands[spec.name].help == spec.summary
    ingest = group.commands["ingest"]
    assert ingest.help == stage("ingest").summary
    assert {"poll", "replay"} <= set(getattr(ingest, "commands", {}))
