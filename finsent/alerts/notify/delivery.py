"""``deliver``: send a notification once, retrying only what may help, and log the outcome.

The delivery log is keyed by (notification id, channel): a notification it already marks
delivered is skipped, so a restarted notifier never re-sends (Alertmanager's ``nflog``).
Before the first send the notification is claimed in the log ("sending"), and one the log
cannot claim is not sent: with a read-only or full store, nothing is posted that the log could
not then stop from being posted again. A claim left without an outcome (the process died, or
the store failed, after sending) counts as sent: at most once per channel, never twice.
Transient failures are retried with exponential backoff; permanent ones are logged and
recorded at once. Recorded errors are scrubbed of every registered secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from finsent.alerts.notify.model import DeliveryError, Notification, Notifier
from finsent.alerts.notify.redact import redacting_logger, scrub

log = redacting_logger(__name__)


class DeliveryLog(Protocol):
    """Where deliveries are remembered; the store is one."""

    def delivery(self, notification_id: str, channel: str) -> Mapping[str, Any] | None:
        """The logged delivery of a notification to a channel, if any (its ``status`` is
        "sending", "delivered" or "failed")."""
        ...

    def record_delivery(self, row: Mapping[str, Any]) -> None:
        """Upsert one attempt's claim or outcome under (``notification_id``, ``channel``);
        raises one of ``LOG_ERRORS`` when it cannot."""
        ...


# What a delivery log raises when it cannot be read or written (the store's database errors,
# a file log's I/O errors).
LOG_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError)


@dataclass(frozen=True)
class DeliveryResult:
    status: Literal["delivered", "skipped", "failed"]
    attempts: int  # sends made by this call (0 when skipped)
    error: str = ""  # the last failure seen, scrubbed; may be set even when finally delivered


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.transient


def deliver(
    n: Notification,
    notifier: Notifier,
    delivery_log: DeliveryLog,
    *,
    now: Callable[[], datetime],
    max_attempts: int = 6,
    max_wait_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Send ``n`` through ``notifier`` unless the delivery log says it went already.

    Transient failures are retried with exponential backoff (1, 2, 4 … s, each wait capped at
    ``max_wait_s``; a longer wait the endpoint asks for via Retry-After is honoured, or, past
    ``max_wait_s``, ends the tries). The notification is claimed under (id, channel) before
    the first send and not sent when the claim cannot be written ("failed", no attempt); the
    outcome is logged, then recorded over the claim. A "failed" row does not block a later
    ``deliver`` of the same notification; a "sending" claim without an outcome does. ``now``
    is the wall clock of the attempt, as recorded.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    channel = notifier.channel

    def row(status: str, attempts: int, error: str) -> dict[str, Any]:
        return {
            "notification_id": n.id,
            "channel": channel,
            "status": status,
            "attempts": attempts,
            "last_error": error,
            "group_key": n.group_key,
            "kind": n.kind,
            "at": now(),
        }

    try:
        logged = delivery_log.delivery(n.id, channel)
        if logged is None or logged["status"] == "failed":
            delivery_log.record_delivery(row("sending", 0, ""))
    except LOG_ERRORS as exc:
        error = scrub(f"delivery log unavailable: {type(exc).__name__}: {exc}")
        log.error("notification %s to %s not sent: %s", n.id, channel, error)
        return DeliveryResult(status="failed", attempts=0, error=error)
    if logged is not None and logged["status"] != "failed":
        # "sending": an earlier attempt may have posted it; a second post would be a duplicate.
        log.info(
            "notification %s (%s %s) already %s to %s; not re-sending",
            n.id,
            n.kind,
            n.group_key,
            "delivered" if logged["status"] == "delivered" else "claimed and perhaps sent",
            channel,
        )
        return DeliveryResult(status="skipped", attempts=0)

    attempts = 0
    last_error = ""

    def send_once() -> None:
        nonlocal attempts, last_error
        attempts += 1
        log.info(
            "sending notification %s (%s %s) to %s: attempt %d of %d",
            n.id,
            n.kind,
            n.group_key,
            channel,
            attempts,
            max_attempts,
        )
        failure: DeliveryError | None = None
        try:
            notifier.send(n)
        except DeliveryError as exc:
            failure = exc
        except Exception as exc:  # a notifier bug: not worth retrying, and not a crash
            failure = DeliveryError(f"{type(exc).__name__}: {exc}", transient=False)
        if failure is not None:
            last_error = scrub(str(failure))
            kind = "transient" if failure.transient else "permanent"
            log.warning(
                "notification %s to %s: attempt %d failed (%s): %s",
                n.id,
                channel,
                attempts,
                kind,
                last_error,
            )
            raise failure

    backoff = wait_exponential(multiplier=1, min=1, max=max_wait_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return max(backoff(state), asked) if asked is not None else backoff(state)

    out_of_attempts = stop_after_attempt(max_attempts)

    def stop(state: RetryCallState) -> bool:
        # Out of attempts, or the endpoint asked for a longer wait than we may spend.
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return out_of_attempts(state) or (asked is not None and asked > max_wait_s)

    def before_sleep(state: RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        log.info("notification %s to %s: retrying in %.1f s", n.id, channel, seconds)

    retrying = Retrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(_is_transient),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    delivered = False
    try:
        retrying(send_once)
        delivered = True
    except DeliveryError:
        pass  # logged by send_once; recorded below

    status: Literal["delivered", "failed"] = "delivered" if delivered else "failed"
    if delivered:
        log.info("notification %s delivered to %s after %d attempt(s)", n.id, channel, attempts)
    else:
        log.error(
            "notification %s to %s failed after %d attempt(s): %s",
            n.id,
            channel,
            attempts,
            last_error,
        )
    try:
        delivery_log.record_delivery(row(status, attempts, last_error))
    except LOG_ERRORS as exc:
        # The claim stays: the notification counts as sent and is never posted again here.
        log.error(
            "notification %s to %s: outcome %s not logged (%s); its claim stops a re-send",
            n.id,
            channel,
            status,
            scrub(f"{type(exc).__name__}: {exc}"),
        )
    return DeliveryResult(status=status, attempts=attempts, error=last_error)
