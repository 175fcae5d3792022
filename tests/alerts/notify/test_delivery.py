"""``deliver``: retries with backoff for transient failures only, and the delivery log that
stops re-sends, against an in-memory log and against the store across a restart."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from support.notifications import NOW, FakeSleep, notification, slack
from support.notify_loopback import Reply, WebhookServer

from finsent.alerts.notify.delivery import DeliveryLog, DeliveryResult, deliver
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.runtime.store import Store, make_engine


class MemoryLog:
    """A delivery log in a dict: all ``deliver`` needs of the store."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def delivery(self, notification_id: str, channel: str) -> Mapping[str, Any] | None:
        return self.rows.get((notification_id, channel))

    def record_delivery(self, row: Mapping[str, Any]) -> None:
        self.rows[row["notification_id"], row["channel"]] = dict(row)


class Scripted:
    """A notifier that fails with the scripted errors, then succeeds."""

    channel = "scripted"

    def __init__(self, *failures: DeliveryError) -> None:
        self.failures = list(failures)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)
        if self.failures:
            raise self.failures.pop(0)


def transient(retry_after: float | None = None) -> DeliveryError:
    return DeliveryError("busy", transient=True, retry_after=retry_after)


def test_a_delivered_notification_is_logged_and_never_sent_again() -> None:
    log: DeliveryLog = MemoryLog()
    notifier = Scripted()

    first = deliver(notification(), notifier, log, now=lambda: NOW, sleep=FakeSleep())
    again = deliver(notification(), notifier, log, now=lambda: NOW, sleep=FakeSleep())

    assert first == DeliveryResult(status="delivered", attempts=1)
    assert again == DeliveryResult(status="skipped", attempts=0)
    assert len(notifier.sent) == 1
    row = log.delivery("n-1", "scripted")
    assert row is not None
    assert {k: row[k] for k in ("status", "attempts", "group_key", "kind", "at")} == {
        "status": "delivered",
        "attempts": 1,
        "group_key": "topic:Financials",
        "kind": "firing",
        "at": NOW,
    }


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    sleep = FakeSleep()
    notifier = Scripted(*[transient()] * 4)

    result = deliver(notification(), notifier, MemoryLog(), now=lambda: NOW, sleep=sleep)

    assert (result.status, result.attempts, result.error) == ("delivered", 5, "busy")
    assert sleep.waits == [1, 2, 4, 8]


def test_a_permanent_failure_is_recorded_at_once() -> None:
    log = MemoryLog()
    sleep = FakeSleep()
    notifier = Scripted(DeliveryError("bad request", transient=False))

    result = deliver(notification(), notifier, log, now=lambda: NOW, sleep=sleep)

    assert (result.status, result.attempts, sleep.waits) == ("failed", 1, [])
    assert log.rows["n-1", "scripted"]["last_error"] == "bad request"


def test_max_attempts_must_allow_one_send() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        deliver(notification(), Scripted(), MemoryLog(), now=lambda: NOW, max_attempts=0)


def test_slack_outage_then_recovery_delivers_exactly_once(store_path: str) -> None:
    outage = [Reply(500, b"rollup_error")] * 3 + [Reply(503, b"busy")]
    sleep = FakeSleep()
    with WebhookServer(outage) as server:
        store = Store(store_path)
        result = deliver(notification(), slack(server), store, now=lambda: NOW, sleep=sleep)
        store.close()
        assert result.status == "delivered" and result.attempts == 5
        assert "HTTP 503: busy" in result.error  # the last failure, kept for the record
        assert len(server.received) == 5 and len(server.accepted) == 1
        assert sleep.waits == [1, 2, 4, 8]  # exponential backoff, no real waiting

        # A restart: a new process's notifier and store object, on the same log.
        restarted = Store(store_path)
        again = deliver(notification(), slack(server), restarted, now=lambda: NOW, sleep=sleep)
        row = restarted.delivery("n-1", "slack-ops")
        restarted.close()
        assert again == DeliveryResult(status="skipped", attempts=0)
        assert len(server.received) == 5 and len(server.accepted) == 1
    assert row is not None and row["status"] == "delivered" and row["attempts"] == 5


def test_slack_outage_longer_than_the_attempts_fails_then_a_later_deliver_sends(
    store: Store,
) -> None:
    sleep = FakeSleep()
    with WebhookServer([Reply(500)] * 3) as server:
        notifier = slack(server)
        first = deliver(
            notification(), notifier, store, now=lambda: NOW, sleep=sleep, max_attempts=3
        )
        assert (first.status, first.attempts) == ("failed", 3)
        assert store.delivery("n-1", "slack-ops")["status"] == "failed"  # type: ignore[index]
        second = deliver(notification(), notifier, store, now=lambda: NOW, sleep=sleep)
        assert (second.status, second.attempts) == ("delivered", 1)
        assert len(server.accepted) == 1
    assert sleep.waits == [1, 2]
    assert store.delivery("n-1", "slack-ops")["status"] == "delivered"  # type: ignore[index]


def read_only(store: Store, store_path: str) -> None:
    """Turn ``store`` read-only, as a remounted or locked-down database file is."""
    store.engine.dispose()
    store.engine = make_engine(
        f"sqlite:///file:{store_path.removeprefix('sqlite:///')}?mode=ro&uri=true"
    )


def test_a_read_only_store_posts_nothing_however_often_the_notifier_restarts(
    store_path: str,
) -> None:
    with WebhookServer([]) as server:
        for _restart in range(3):
            store = Store(store_path)
            read_only(store, store_path)
            result = deliver(
                notification(), slack(server), store, now=lambda: NOW, sleep=FakeSleep()
            )
            store.close()
            assert (result.status, result.attempts) == ("failed", 0)
            assert "delivery log unavailable" in result.error and "readonly" in result.error
        assert server.received == []  # not claimed, not sent: a later deliver sends it once


def test_a_store_that_turns_read_only_after_the_send_posts_once_across_restarts(
    store_path: str,
) -> None:
    store = Store(store_path)

    class BreaksTheStore(Scripted):
        def send(self, n: Notification) -> None:
            super().send(n)
            read_only(store, store_path)  # the outcome can no longer be recorded

    notifier = BreaksTheStore()
    first = deliver(notification(), notifier, store, now=lambda: NOW, sleep=FakeSleep())
    assert first.status == "delivered"
    for _restart in range(2):
        restarted = Store(store_path)
        again = deliver(notification(), notifier, restarted, now=lambda: NOW, sleep=FakeSleep())
        assert again == DeliveryResult(status="skipped", attempts=0)
        assert restarted.delivery("n-1", "scripted")["status"] == "sending"  # type: ignore[index]
        restarted.close()
    assert len(notifier.sent) == 1


def test_backoff_is_capped_by_max_wait(store: Store) -> None:
    sleep = FakeSleep()
    with WebhookServer([Reply(502)] * 5) as server:
        result = deliver(
            notification(), slack(server), store, now=lambda: NOW, sleep=sleep, max_wait_s=3
        )
    assert result.status == "delivered" and sleep.waits == [1, 2, 3, 3, 3]


def test_slack_429_honours_a_short_retry_after_and_gives_up_on_a_long_one(store: Store) -> None:
    sleep = FakeSleep()
    with WebhookServer([Reply(429, b"rate_limited", {"Retry-After": "7"})]) as server:
        result = deliver(notification(), slack(server), store, now=lambda: NOW, sleep=sleep)
    assert (result.status, result.attempts, sleep.waits) == ("delivered", 2, [7])

    sleep = FakeSleep()
    with WebhookServer([Reply(429, b"rate_limited", {"Retry-After": "600"})]) as server:
        n = notification(nid="n-2")
        result = deliver(n, slack(server), store, now=lambda: NOW, sleep=sleep)
    assert (result.status, result.attempts, sleep.waits) == ("failed", 1, [])
    assert "HTTP 429" in result.error


@pytest.mark.parametrize(("status", "body"), [(400, b"invalid_payload"), (404, b"no_service")])
def test_slack_permanent_error_is_not_retried(
    store: Store, status: int, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="finsent.alerts.notify.delivery")
    sleep = FakeSleep()
    with WebhookServer([Reply(status, body)]) as server:
        result = deliver(notification(), slack(server), store, now=lambda: NOW, sleep=sleep)
        assert len(server.received) == 1
    assert (result.status, result.attempts, sleep.waits) == ("failed", 1, [])
    assert f"HTTP {status}: {body.decode()}" in result.error
    row = store.delivery("n-1", "slack-ops")
    assert row is not None and row["status"] == "failed" and row["last_error"] == result.error
    assert "attempt 1 failed (permanent)" in caplog.text
    assert "failed after 1 attempt(s)" in caplog.text


def test_a_notifier_bug_is_a_permanent_failure(store: Store) -> None:
    class Broken:
        channel = "broken"

        def send(self, notification: Notification) -> None:
            raise KeyError("oops")

    result = deliver(notification(), Broken(), store, now=lambda: NOW, sleep=FakeSleep())
    assert (result.status, result.attempts) == ("failed", 1)
    assert "KeyError" in result.error
