"""Stage logic for in-process tests, made the way a stage's process makes it: through its
binding in ``finsent.app.stages`` (from the settings and the stage's store).

The one place tests build stage logic, so that a change to a logic's constructor touches the
bindings and this module, not every test. Drive what these return with
``finsent.runtime.testing.run_logic``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from finsent.alerts.alerter import Alerter
from finsent.alerts.notifier import NotifierLogic
from finsent.alerts.notify.model import Notifier
from finsent.app.stages import CONSUMING
from finsent.core.records import NewsItem, ScoredItem
from finsent.core.settings import Settings
from finsent.model.scorer import Scorer
from finsent.runtime.store import Commit, Store
from finsent.stream.aggregation import Aggregator
from finsent.stream.router import Router
from finsent.stream.scoring import Scoring
from support.records import T0, scored_item

L = TypeVar("L")


class PoisonSensitiveScorer:
    """A fake model: scores every story neutral, except that any call holding a story whose
    title contains 'poison' fails whole, as a tokenizer error would. Counts its calls."""

    version = "poison-sensitive-1"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        self.calls += 1
        if any("poison" in item.title for item in items):
            raise RuntimeError("tokenizer exploded")
        return [
            scored_item(
                item,
                topic="Markets",
                sentiment="neutral",
                score=0.0,
                confidence=0.5,
                model_version=self.version,
                scored_at=T0,
            )
            for item in items
        ]


def isolated_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of an isolated test: its own SQLite store and cache under ``tmp_path``."""
    return Settings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}", cache_dir=tmp_path / "cache", **overrides
    )


def _bound(name: str, settings: Settings, store: Store, kind: type[L]) -> L:
    logic = CONSUMING[name](settings, store)
    if not isinstance(logic, kind):
        raise TypeError(f"the {name} binding made a {type(logic).__name__}, not a {kind.__name__}")
    return logic


def router(settings: Settings, store: Store) -> Router:
    return _bound("router", settings, store, Router)


def aggregator(settings: Settings, store: Store) -> Aggregator:
    return _bound("aggregator", settings, store, Aggregator)


def alerter(settings: Settings, store: Store) -> Alerter:
    return _bound("alerter", settings, store, Alerter)


def notifier(
    settings: Settings,
    store: Store,
    notifiers: Mapping[str, Notifier],
    sleep: Callable[[float], None] | None = None,
) -> NotifierLogic:
    """The notifier stage's logic with ``notifiers`` (fakes) in place of the Slack and email
    senders that the binding makes from the rules' channels and their secrets, and ``sleep``
    (a fake) in place of the retry backoff's real waits."""
    logic = _bound("notifier", settings, store, NotifierLogic)
    logic.notifiers = dict(notifiers)
    if sleep is not None:
        logic.sleep = sleep
    return logic


def scoring(scorer: Scorer) -> Scoring:
    """The scorer stage's logic around ``scorer`` (the binding loads the configured model)."""
    return Scoring(scorer)


class ProcessKilled(Exception):
    """A stage process dying; not an error the runner retries."""


class DyingStore(Store):
    """A store whose stage process dies at its ``dies_at``-th batch commit (1-based): after
    the batch's outputs were sent and its side effects done, before anything of the batch is
    stored. A new logic on a plain ``Store`` of the same URL is the restarted process."""

    def __init__(self, url: str, dies_at: int) -> None:
        super().__init__(url)
        self.dies_at = dies_at
        self.commits = 0

    def commit(self, batch: Commit) -> None:
        self.commits += 1
        if self.commits == self.dies_at:
            raise ProcessKilled(f"killed before commit {self.commits}")
        super().commit(batch)
