"""The model registry: versions made by ``finsent retrain``, promotion and rollback, and a
scorer that follows promotions.

Each version is an artifact folder under ``<cache dir>/models/<version>`` and a row of the
store's ``model_versions`` table with its gate report. Promotions and rollbacks are rows of
``model_promotions``; the latest says which version the scorers run. Rollback returns to the
version the current one replaced, back down to the configured default (the shipped model,
unless ``FINSENT_MODEL_ARTIFACT`` names another).
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finsent.core.errors import UserError
from finsent.core.records import NewsItem, ScoredItem
from finsent.core.settings import Settings
from finsent.model.artifact import SHIPPED_ARTIFACT, ArtifactError, read_artifact
from finsent.model.scorer import Scorer, artifact_setting_error
from finsent.runtime.store import Store
from finsent.runtime.store.registry import SHIPPED_PATH

log = logging.getLogger(__name__)
STATUSES = ("candidate", "passed", "refused", "default")


class RegistryError(UserError, ValueError):
    """A version that is not registered, or a rollback with nothing to return to."""


@dataclass(frozen=True)
class RegistryConfig:
    models_dir: Path  # where registered artifact folders live
    default_artifact: Path | None  # the version with no promotion; None: the shipped one

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryConfig:
        return cls(settings.cache_dir / "models", settings.model_artifact)


@dataclass(frozen=True)
class ActiveModel:
    version: str
    path: Path
    promoted_at: datetime | None  # None: the default, never promoted


def stack_after(promotions: Sequence[dict[str, Any]]) -> list[str]:
    """The versions promoted and not rolled back, oldest first: a promotion pushes its
    version, a rollback pops one. The top is the active version; empty: the default."""
    stack: list[str] = []
    for row in promotions:
        if row["kind"] == "promote":
            stack.append(row["version"])
        elif stack:
            stack.pop()
    return stack


class ModelRegistry:
    def __init__(self, store: Store, config: RegistryConfig) -> None:
        self.store = store
        self.config = config

    # -- what is there ----------------------------------------------------------------------

    @functools.cached_property
    def _default_version(self) -> str:
        try:
            return read_artifact(self.config.default_artifact).version  # hashes the graph: once
        except ArtifactError as exc:
            if self.config.default_artifact is None:
                raise  # the shipped artifact: a broken install, not a setting
            raise artifact_setting_error(exc) from exc

    def default_version(self) -> str:
        return self._default_version

    def path_of(self, version: str) -> Path:
        """The artifact folder of a registered version, or of the default's."""
        if version == self.default_version():
            return Path(self.config.default_artifact or SHIPPED_ARTIFACT)
        row = self.store.model_version(version)
        if row is None:
            known = [r["version"] for r in self.store.model_versions()]
            raise RegistryError(
                f"no model version {version!r}; `finsent model list` shows the "
                f"{len(known) + 1} there are"
            )
        return SHIPPED_ARTIFACT if row["path"] == SHIPPED_PATH else Path(row["path"])

    def active(self) -> ActiveModel:
        latest = self.store.active_model()
        if latest is None or latest["version"] is None:
            version = self.default_version()
            return ActiveModel(version, self.path_of(version), None)
        return ActiveModel(latest["version"], self.path_of(latest["version"]), latest["at"])

    def active_version(self) -> str:
        """The version the scorers should run now (one small query; no artifact read)."""
        latest = self.store.active_model()
        if latest is None or latest["version"] is None:
            return self.default_version()
        return str(latest["version"])

    def listing(self) -> list[dict[str, Any]]:
        """Every version, the default first, with when each was last promoted and whether it
        runs now."""
        promotions = self.store.model_promotions()
        promoted_at: dict[str, datetime] = {}
        for row in promotions:
            if row["kind"] == "promote":
                promoted_at[row["version"]] = row["at"]
        active = self.active_version()
        default = self.default_version()
        rows: list[dict[str, Any]] = [
            {
                "version": default,
                "status": "default",
                "path": str(self.config.default_artifact or "shipped with finsent"),
                "parent": None,
                "created_at": None,
                "corrections": 0,
                "report": {},
            }
        ]
        rows += [r for r in self.store.model_versions() if r["version"] != default]
        for row in rows:
            row["promoted_at"] = promoted_at.get(row["version"])
            row["active"] = row["version"] == active
        return rows

    # -- changes ----------------------------------------------------------------------------

    def register(
        self,
        artifact_dir: Path,
        *,
        parent: str,
        corrections: int,
        status: str,
        report: dict[str, Any],
        now: datetime,
    ) -> str:
        """Move a freshly written artifact into the registry; its version."""
        version = read_artifact(artifact_dir).version
        target = self.config.models_dir / version.replace("/", "_")
        if target.resolve() != artifact_dir.resolve():
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(artifact_dir), target)
        self.store.save_model_version(
            {
                "version": version,
                "path": str(target),
                "parent": parent,
                "created_at": now,
                "status": status,
                "corrections": corrections,
                "report": report,
            }
        )
        return version

    def promote(self, version: str, *, by: str, reason: str, now: datetime) -> str | None:
        """Make ``version`` the one the scorers run; the version it replaces."""
        read_artifact(self.path_of(version))  # refuse a folder that is gone or broken
        previous = self.active_version()
        if previous == version:
            raise RegistryError(f"{version} is already the active model")
        self.store.record_promotion(
            {
                "version": version,
                "previous": previous,
                "kind": "promote",
                "at": now,
                "by": by,
                "reason": reason,
            }
        )
        return previous

    def rollback(self, *, by: str, reason: str, now: datetime) -> tuple[str, str]:
        """Return to the version the active one replaced; (from, to)."""
        stack = stack_after(self.store.model_promotions())
        if not stack:
            raise RegistryError(
                f"nothing to roll back: the default model {self.default_version()} is active"
            )
        current = stack.pop()
        target = stack[-1] if stack else None
        if target is not None:
            read_artifact(self.path_of(target))
        self.store.record_promotion(
            {
                "version": target,
                "previous": current,
                "kind": "rollback",
                "at": now,
                "by": by,
                "reason": reason,
            }
        )
        return current, target or self.default_version()


# ---- the scorer that follows promotions -----------------------------------------------------


class FollowingScorer:
    """A scorer that runs the registry's active version and, when another is promoted, loads
    it between batches (``reload_due`` / ``reload``, which the stage runner calls after the
    batch in flight is committed). A version that fails to load is logged and skipped: the
    running model goes on."""

    def __init__(
        self,
        registry: ModelRegistry,
        load: Callable[[Path], Scorer],
        poll_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._load = load
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._next_check = clock() + poll_seconds
        self._wanted: str | None = None
        self._failed: str | None = None  # a version that would not load: not retried
        wanted = registry.active_version()
        try:
            self.inner = load(registry.path_of(wanted))
            self.running = wanted  # the registry's name of what runs
        except Exception:  # noqa: BLE001 - a promoted folder gone must not stop the scoring
            default = registry.default_version()
            if wanted == default:
                raise  # the default itself is broken: nothing to fall back on
            log.exception(
                "could not load the promoted model %s; scoring with the default %s until "
                "another is promoted (`finsent model rollback` makes it official)",
                wanted,
                default,
            )
            self.inner = load(registry.path_of(default))
            self.running, self._failed = default, wanted

    @property
    def version(self) -> str:
        return self.inner.version

    def score(self, items: Sequence[NewsItem]) -> list[ScoredItem]:
        return self.inner.score(items)

    def reload_due(self) -> bool:
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.poll_seconds
        try:
            wanted = self.registry.active_version()
        except Exception:  # noqa: BLE001 - a store outage: keep scoring with what runs
            log.warning("model registry unreachable; keeping %s", self.running, exc_info=True)
            return False
        self._wanted = wanted
        if wanted != self._failed:  # once another is wanted, a repaired one may be promoted again
            self._failed = None
        return wanted not in (self.running, self._failed)

    def reload(self) -> bool:
        """Load the wanted version; False (and the old model kept) if it cannot be loaded."""
        wanted = self._wanted
        if wanted is None or wanted == self.running:
            return False
        started = time.perf_counter()
        try:
            path = self.registry.path_of(wanted)
        except RegistryError:
            log.error("model %s is not registered; still scoring with %s", wanted, self.running)
            self._failed = wanted
            return False
        except Exception:  # noqa: BLE001 - a store outage: try again at the next poll
            log.warning("model registry unreachable; keeping %s", self.running, exc_info=True)
            return False
        try:
            scorer = self._load(path)
        except Exception:  # noqa: BLE001 - a bad artifact must not stop the scoring
            log.exception("could not load model %s; still scoring with %s", wanted, self.running)
            self._failed = wanted
            return False
        log.info(
            "model %s → %s (loaded in %.1f s)",
            self.running,
            wanted,
            time.perf_counter() - started,
        )
        self.inner, self.running, self._failed = scorer, wanted, None
        return True


def utc_now() -> datetime:
    return datetime.now(UTC)
