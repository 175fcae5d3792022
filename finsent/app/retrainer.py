"""`finsent retrainer`: retrain on a schedule (APScheduler, a cron expression in UTC) when
enough new corrections have come in since the last candidate.

The check is pure (``due``); the job runs ``finsent.model.retrain.retrain`` and logs the
gate's verdict. A failing run is logged and the schedule goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from finsent.core.errors import UserError
from finsent.core.settings import Settings

log = logging.getLogger(__name__)


class ScheduleError(UserError, ValueError):
    """FINSENT_RETRAIN_SCHEDULE is not a cron expression."""


@dataclass(frozen=True)
class RetrainerConfig:
    schedule: str  # cron, five fields, UTC
    min_corrections: int  # new corrected stories since the last candidate

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrainerConfig:
        return cls(settings.retrain_schedule, settings.retrain_min_corrections)


def new_corrections(history: Sequence[dict[str, Any]], versions: Sequence[dict[str, Any]]) -> int:
    """Stories corrected after the newest registered candidate was made (all, if none)."""
    made = [v["created_at"] for v in versions if v.get("created_at") is not None]
    since = max(made) if made else None
    return len({row["story_id"] for row in history if since is None or row["at"] > since})


def due(
    history: Sequence[dict[str, Any]], versions: Sequence[dict[str, Any]], minimum: int
) -> bool:
    return new_corrections(history, versions) >= minimum


def trigger(config: RetrainerConfig) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(config.schedule, timezone=UTC)
    except ValueError as exc:
        raise ScheduleError(
            f"FINSENT_RETRAIN_SCHEDULE {config.schedule!r} is not a cron expression "
            f"(minute hour day month weekday, e.g. '0 3 * * *'): {exc}"
        ) from exc


def run_scheduled(config: RetrainerConfig, job: Callable[[], None], stop: threading.Event) -> None:
    """Run ``job`` on the schedule until ``stop`` is set."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(job, trigger(config), id="retrain", max_instances=1, coalesce=True)
    scheduler.start()
    next_run = scheduler.get_job("retrain").next_run_time
    log.info("retrainer: next check %s (schedule %r, UTC)", next_run, config.schedule)
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=False)


def utc_now() -> datetime:
    return datetime.now(UTC)
