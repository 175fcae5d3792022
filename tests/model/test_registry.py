"""The model registry: the rollback stack, registering, promoting and rolling back versions in
a temporary store, and the scorer that follows promotions between batches (a fake loader and
a fake clock: no model is run)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.model_versions import SHIPPED_VERSION, fake_artifact, register_fake
from support.records import news_item, scored_item

from finsent.core.records import NewsItem, ScoredItem
from finsent.model.artifact import SHIPPED_ARTIFACT
from finsent.model.registry import (
    FollowingScorer,
    ModelRegistry,
    RegistryConfig,
    RegistryError,
    stack_after,
)
from finsent.runtime.store import Store

T0 = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
A, B, C = "finsent-attn-1+aaa", "finsent-attn-1+bbb", "finsent-attn-1+ccc"


def promote(version: str) -> dict[str, Any]:
    return {"kind": "promote", "version": version}


ROLLBACK = {"kind": "rollback", "version": None}


@pytest.mark.parametrize(
    ("promotions", "stack"),
    [
        ([], []),
        ([promote(A)], [A]),
        ([promote(A), promote(B)], [A, B]),
        ([promote(A), promote(B), ROLLBACK], [A]),
        ([promote(A), promote(B), ROLLBACK, ROLLBACK], []),
        ([promote(A), promote(B), ROLLBACK, promote(C)], [A, C]),
        ([ROLLBACK, promote(A)], [A]),  # a rollback with nothing under it changes nothing
        ([promote(A), ROLLBACK, ROLLBACK, ROLLBACK], []),
    ],
)
def test_the_stack_pushes_promotions_and_pops_rollbacks(
    promotions: list[dict[str, Any]], stack: list[str]
) -> None:
    assert stack_after(promotions) == stack


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    return ModelRegistry(store, RegistryConfig(tmp_path / "models", default_artifact=None))


def test_with_nothing_registered_the_shipped_model_runs(registry: ModelRegistry) -> None:
    active = registry.active()
    assert (active.version, active.path, active.promoted_at) == (
        SHIPPED_VERSION,
        SHIPPED_ARTIFACT,
        None,
    )
    [only] = registry.listing()
    assert (only["version"], only["status"], only["active"]) == (SHIPPED_VERSION, "default", True)


def test_register_moves_the_artifact_into_the_registry(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    made = fake_artifact(tmp_path / "out", A)

    version = registry.register(
        made, parent=SHIPPED_VERSION, corrections=40, status="passed", report={}, now=T0
    )

    assert version == A
    assert registry.path_of(A) == tmp_path / "models" / A
    assert (registry.path_of(A) / "config.json").is_file() and not made.exists()
    listed = registry.listing()
    assert [(r["version"], r["status"], r["active"]) for r in listed] == [
        (SHIPPED_VERSION, "default", True),
        (A, "passed", False),
    ]
    assert (listed[1]["created_at"], listed[1]["corrections"]) == (T0, 40)


def test_promotions_stack_and_rollbacks_return_down_to_the_default(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    for n, version in enumerate((A, B, C)):
        register_fake(registry, tmp_path / "new", version, now=T0 + timedelta(minutes=n))
    at = iter(T0 + timedelta(hours=n) for n in range(1, 20))

    def step(kind: str, version: str | None = None) -> str:
        if kind == "promote":
            assert version is not None
            registry.promote(version, by="ann", reason="", now=next(at))
        else:
            registry.rollback(by="ann", reason="", now=next(at))
        return registry.active_version()

    assert registry.promote(A, by="ann", reason="", now=next(at)) == SHIPPED_VERSION
    assert step("promote", B) == B
    assert registry.rollback(by="ann", reason="", now=next(at)) == (B, A)
    assert step("promote", C) == C
    assert step("rollback") == A  # C replaced A: B was rolled back already
    assert registry.active().path == tmp_path / "models" / A
    assert registry.rollback(by="ann", reason="", now=next(at)) == (A, SHIPPED_VERSION)
    assert registry.active().promoted_at is None  # the default
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(by="ann", reason="", now=next(at))
    with pytest.raises(RegistryError, match="already the active model"):
        registry.promote(SHIPPED_VERSION, by="ann", reason="", now=next(at))
    with pytest.raises(RegistryError, match="no model version 'nope'; .* shows the 4 there are"):
        registry.promote("nope", by="ann", reason="", now=next(at))


# -- the following scorer -----------------------------------------------------------------------


@dataclass
class FakeScorer:
    version: str

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        return [scored_item(item, model_version=self.version) for item in items]


@dataclass
class Loader:
    """Loads an artifact folder as a fake scorer named after it; refuses the broken ones."""

    broken: set[str] = field(default_factory=set)
    loaded: list[str] = field(default_factory=list)

    def __call__(self, path: Path) -> FakeScorer:
        self.loaded.append(path.name)
        if path.name in self.broken:
            raise RuntimeError(f"cannot load {path.name}")
        return FakeScorer(path.name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def following(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[FollowingScorer, Loader, Clock, list[int]]:
    for n, version in enumerate((A, B)):
        register_fake(registry, tmp_path / "new", version, now=T0 + timedelta(minutes=n))
    registry.promote(A, by="ann", reason="", now=T0 + timedelta(hours=1))
    reads: list[int] = []
    active_model = registry.store.active_model

    def counted() -> dict[str, Any] | None:
        reads.append(1)
        return active_model()

    monkeypatch.setattr(registry.store, "active_model", counted)
    loader, clock = Loader(), Clock()
    return FollowingScorer(registry, loader, poll_seconds=10, clock=clock), loader, clock, reads


def test_it_starts_with_the_active_version_and_polls_only_every_poll_seconds(
    following: tuple[FollowingScorer, Loader, Clock, list[int]],
) -> None:
    scorer, loader, clock, reads = following
    assert (scorer.running, scorer.version, loader.loaded) == (A, A, [A])
    [scored] = scorer.score([news_item()])
    assert scored.model_version == A

    reads.clear()
    for step in (2.0, 2.0, 2.0, 2.0, 1.5):
        clock.now += step
        assert not scorer.reload_due()
    assert reads == []  # 9.5 s: the store was not asked
    clock.now += 0.5
    assert not scorer.reload_due()  # asked: nothing new
    assert len(reads) == 1
    clock.now += 9.9
    assert not scorer.reload_due()
    assert len(reads) == 1


def test_a_promotion_is_loaded_between_batches(
    following: tuple[FollowingScorer, Loader, Clock, list[int]], registry: ModelRegistry
) -> None:
    scorer, loader, clock, _ = following
    registry.promote(B, by="ann", reason="", now=T0 + timedelta(hours=2))
    assert not scorer.reload_due()  # not yet time to look
    clock.now += 10

    assert scorer.reload_due()
    assert scorer.reload()

    assert (scorer.running, scorer.version, loader.loaded) == (B, B, [A, B])
    assert scorer.score([news_item()])[0].model_version == B
    assert not scorer.reload()  # nothing more wanted
    registry.rollback(by="ann", reason="", now=T0 + timedelta(hours=3))
    clock.now += 10
    assert scorer.reload_due() and scorer.reload() and scorer.running == A


def test_a_version_that_fails_to_load_keeps_the_old_one_and_is_not_retried(
    following: tuple[FollowingScorer, Loader, Clock, list[int]],
    registry: ModelRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scorer, loader, clock, _ = following
    loader.broken.add(B)
    registry.promote(B, by="ann", reason="", now=T0 + timedelta(hours=2))
    clock.now += 10

    assert scorer.reload_due()
    with caplog.at_level(logging.ERROR, logger="finsent.model.registry"):
        assert not scorer.reload()

    assert f"could not load model {B}; still scoring with {A}" in caplog.text
    assert (scorer.running, scorer.score([news_item()])[0].model_version) == (A, A)
    for _ in range(3):
        clock.now += 10
        assert not scorer.reload_due()  # B is not tried again
    assert loader.loaded == [A, B]


def test_a_failed_version_promoted_again_after_a_rollback_is_tried_again(
    following: tuple[FollowingScorer, Loader, Clock, list[int]], registry: ModelRegistry
) -> None:
    scorer, loader, clock, _ = following
    loader.broken.add(B)
    registry.promote(B, by="ann", reason="", now=T0 + timedelta(hours=2))
    clock.now += 10
    assert scorer.reload_due() and not scorer.reload()
    registry.rollback(by="ann", reason="B would not load", now=T0 + timedelta(hours=3))
    clock.now += 10
    assert not scorer.reload_due()  # back to what runs

    loader.broken.clear()  # its folder repaired
    registry.promote(B, by="ann", reason="fixed", now=T0 + timedelta(hours=4))
    clock.now += 10

    assert scorer.reload_due() and scorer.reload()
    assert scorer.running == B


def test_a_store_outage_keeps_scoring_with_what_runs(
    following: tuple[FollowingScorer, Loader, Clock, list[int]],
    registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scorer, loader, clock, _ = following

    def down() -> None:
        raise ConnectionError("store unreachable")

    monkeypatch.setattr(registry.store, "active_model", down)
    clock.now += 10
    with caplog.at_level(logging.WARNING, logger="finsent.model.registry"):
        assert not scorer.reload_due()
    assert f"model registry unreachable; keeping {A}" in caplog.text
    assert scorer.score([news_item()])[0].model_version == A

    monkeypatch.undo()  # the store is back, and B was promoted meanwhile
    registry.promote(B, by="ann", reason="", now=T0 + timedelta(hours=2))
    clock.now += 10
    assert scorer.reload_due() and scorer.reload() and scorer.running == B


def test_a_store_outage_while_reloading_is_retried_at_the_next_poll(
    following: tuple[FollowingScorer, Loader, Clock, list[int]],
    registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer, loader, clock, _ = following
    registry.promote(B, by="ann", reason="", now=T0 + timedelta(hours=2))
    clock.now += 10
    assert scorer.reload_due()

    def down(version: str) -> None:
        raise ConnectionError("store unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(registry.store, "model_version", down)
        assert not scorer.reload()
    assert scorer.running == A

    clock.now += 10
    assert scorer.reload_due() and scorer.reload() and scorer.running == B


def test_a_promoted_version_the_registry_does_not_hold_is_skipped(
    following: tuple[FollowingScorer, Loader, Clock, list[int]], registry: ModelRegistry
) -> None:
    scorer, loader, clock, _ = following
    row = {"version": C, "previous": A, "kind": "promote", "by": "ann", "reason": ""}
    registry.store.record_promotion({**row, "at": T0 + timedelta(hours=2)})  # C: no version row
    clock.now += 10

    assert scorer.reload_due() and not scorer.reload()

    clock.now += 10
    assert not scorer.reload_due()  # not asked again
    assert (scorer.running, loader.loaded) == (A, [A])


def test_a_scorer_whose_promoted_model_cannot_load_starts_with_the_default(
    registry: ModelRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register_fake(registry, tmp_path / "new", A, now=T0)
    registry.promote(A, by="ann", reason="", now=T0 + timedelta(hours=1))
    loader, clock = Loader(broken={A}), Clock()
    with caplog.at_level(logging.ERROR, logger="finsent.model.registry"):
        scorer = FollowingScorer(registry, loader, poll_seconds=10, clock=clock)

    assert scorer.running == SHIPPED_VERSION  # scoring goes on, with the default
    assert loader.loaded == [A, SHIPPED_ARTIFACT.name]
    assert f"could not load the promoted model {A}; scoring with the default" in caplog.text
    clock.now += 10
    assert not scorer.reload_due()  # A is not retried at every poll


def test_a_broken_default_with_nothing_promoted_fails_the_start(registry: ModelRegistry) -> None:
    loader = Loader(broken={SHIPPED_ARTIFACT.name})
    with pytest.raises(RuntimeError, match="cannot load"):
        FollowingScorer(registry, loader, poll_seconds=10, clock=Clock())
