"""Each declared stage (``finsent.core.stages``) bound to its logic: the one module that sees
every stage's code.

A binding is a logic factory. For a consuming stage (``CONSUMING``) it makes, from the settings
and, for a store-checkpointed stage, the stage's store, the logic that the runner drives
(``finsent.runtime.runner.run_stage``). A source (``SOURCES``: ingest) has no consumer loop;
its feeds, ``finsent ingest poll`` and ``finsent ingest replay``, hand their stories to its
logic (``Admission``) and on through the runner's source side (``SourceRunner``). The factories
import their stage's code when called, so a process loads only its own stage (the scorer's
model is no weight on the notifier) and the CLI starts fast.

The factories are where the settings end: each builds its stage's small frozen config
(``AggregatorConfig.from_settings`` and the like) and hands only that to the logic.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from finsent.core.errors import UserError
from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.runtime.runner import LogicFactory, StageLogic, run_stage
from finsent.runtime.store import Store

if TYPE_CHECKING:
    from finsent.ingest.admit import Admission
    from finsent.model.entity_sentiment import EntityScorer

log = logging.getLogger(__name__)
SourceFactory = Callable[[Settings], "Admission"]


class StageError(UserError, RuntimeError):
    """A stage cannot start as configured; the message says why (e.g. a bad rules file)."""


def _store(name: str, store: Store | None) -> Store:
    if store is None:
        raise ValueError(f"stage {name} checkpoints in the store, but was given none")
    return store


def ingest_logic(settings: Settings) -> Admission:
    from finsent.ingest.admit import Admission, IngestConfig

    return Admission.open(IngestConfig.from_settings(settings))


def _scorer(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.model.scorer import ScorerConfig, load_scorer
    from finsent.stream.scoring import Scoring

    config = ScorerConfig.from_settings(settings)
    if settings.scorer != "attention" or not settings.model_follow_registry:
        scorer = load_scorer(settings.scorer, config)
        log.info("scorer %s", scorer.version)
        return Scoring(scorer, _entity_scorer(scorer, settings))
    from finsent.model.registry import FollowingScorer, ModelRegistry, RegistryConfig

    # The registry's promoted version, and each one promoted later, between batches.
    registry = ModelRegistry(Store(settings.database_url), RegistryConfig.from_settings(settings))
    following = FollowingScorer(
        registry,
        lambda path: load_scorer("attention", replace(config, artifact=path)),
        settings.model_poll_seconds,
    )
    log.info(
        "scorer %s (the registry's active model, checked every %.0f s)",
        following.version,
        settings.model_poll_seconds,
    )
    return Scoring(
        following,
        _entity_scorer(following.inner, settings),
        lambda inner: _entity_scorer(inner, settings),
    )


def _entity_scorer(scorer: object, settings: Settings) -> EntityScorer | None:
    """Per-company sentiment for headlines naming several companies: the attention model's
    clauses, the companies found as the ingest tagger finds them (same watchlist)."""
    from finsent.model.infer import AttentionScorer

    if not isinstance(scorer, AttentionScorer):
        return None  # the lexicon baseline has no model to read clauses with
    from finsent.core.watchlist import load_watchlist
    from finsent.ingest.tickers import company_index
    from finsent.model.entity_sentiment import EntityScorer, predictor_probabilities

    index = company_index(load_watchlist(settings.watchlist_file))
    return EntityScorer(predictor_probabilities(scorer.predictor), index.find_names)


def _router(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.stream.router import Router

    return Router(_store("router", store))  # it takes nothing from the settings


def _aggregator(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.core.durations import format_duration
    from finsent.stream.aggregation import Aggregator, AggregatorConfig

    config = AggregatorConfig.from_settings(settings)
    log.info(
        "aggregator: windows %s, %s grace, %s allowed lateness, emit %s",
        ",".join(spec.name for spec in config.windows),
        format_duration(config.grace),
        format_duration(config.allowed_lateness),
        config.emit,
    )
    return Aggregator(config, _store("aggregator", store))


def _alerter(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.alerts.alerter import Alerter, AlerterConfig

    config = AlerterConfig.from_settings(settings)
    log.info("alerter watching %s on %s windows", ", ".join(config.keys), config.window.name)
    return Alerter(config, _store("alerter", store))


def _notifier(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.alerts.notifier import NotifierConfig, NotifierLogic, build_notifiers

    config = NotifierConfig.from_settings(settings)
    notifiers = build_notifiers(config)
    log.info("notifier: channels %s", ", ".join(sorted(notifiers)) or "(none configured)")
    return NotifierLogic(config, _store("notifier", store), notifiers)


SOURCES: MappingProxyType[str, SourceFactory] = MappingProxyType({"ingest": ingest_logic})
CONSUMING: MappingProxyType[str, LogicFactory] = MappingProxyType(
    {
        "scorer": _scorer,
        "router": _router,
        "aggregator": _aggregator,
        "alerter": _alerter,
        "notifier": _notifier,
    }
)


def run(name: str, settings: Settings, stop: threading.Event) -> int:
    """Run the consuming stage ``name`` until ``stop`` is set; how many records it sent on."""
    from finsent.alerts.rules import RulesError

    try:
        return run_stage(settings, stage(name), CONSUMING[name], stop)
    except RulesError as exc:  # the alert rules file: a configuration error, not a crash
        raise StageError(str(exc)) from exc
