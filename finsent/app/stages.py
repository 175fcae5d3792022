"""Each declared stage (``finsent.core.stages``) bound to its logic: the one module that sees
every stage's code.

A binding is a logic factory. For a consuming stage (``CONSUMING``) it makes, from the settings
and, for a store-checkpointed stage, the stage's store, the logic that the runner drives
(``finsent.runtime.runner.run_stage``). A source (``SOURCES``: ingest) has no consumer loop;
its feeds, ``finsent ingest poll`` and ``finsent ingest replay``, hand their stories to its
logic (``Admission``) and on through the runner's source side (``SourceRunner``). The factories
import their stage's code when called, so a process loads only its own stage (the scorer's
model is no weight on the notifier) and the CLI starts fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING

from finsent.core.settings import Settings
from finsent.core.stages import stage
from finsent.runtime.runner import LogicFactory, StageLogic, run_stage
from finsent.runtime.store import Store

if TYPE_CHECKING:
    from finsent.ingest.admit import Admission

log = logging.getLogger(__name__)
SourceFactory = Callable[[Settings], "Admission"]


class StageError(RuntimeError):
    """A stage cannot start as configured; the message says why (e.g. a bad rules file)."""


def _store(name: str, store: Store | None) -> Store:
    if store is None:
        raise ValueError(f"stage {name} checkpoints in the store, but was given none")
    return store


def ingest_logic(settings: Settings) -> Admission:
    from finsent.ingest.admit import Admission

    return Admission.from_settings(settings)


def _scorer(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.model.scorer import load_scorer
    from finsent.stream.scoring import Scoring

    scorer = load_scorer(settings.scorer, settings)
    log.info("scorer %s", scorer.version)
    return Scoring(scorer)


def _router(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.stream.router import Router

    return Router(_store("router", store))


def _aggregator(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.stream.aggregation import Aggregator

    log.info(
        "aggregator: windows %s, %ss grace, %ss allowed lateness, emit %s",
        ",".join(settings.windows),
        settings.grace_seconds,
        settings.allowed_lateness_seconds,
        settings.window_emit,
    )
    return Aggregator(settings, _store("aggregator", store))


def _alerter(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.alerts.alerter import Alerter

    logic = Alerter(settings, _store("alerter", store))
    log.info("alerter watching %s on %s windows", ", ".join(settings.alert_keys), logic.spec.name)
    return logic


def _notifier(settings: Settings, store: Store | None) -> StageLogic:
    from finsent.alerts.alerter import load_alert_rules
    from finsent.alerts.notifier import NotifierLogic, build_notifiers

    rules = load_alert_rules(settings)
    notifiers = build_notifiers(rules, settings)
    log.info("notifier: channels %s", ", ".join(sorted(notifiers)) or "(none configured)")
    return NotifierLogic(settings, _store("notifier", store), rules, notifiers)


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
