"""``deliver``: retries with backoff for transient failures only, and the delivery log that
stops re-sends, against an in-memory log and against the store across a restart; then, with
the notifier running against a real broker, a store that turns read-only posts nothing twice."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer
from support.notifications import NOW, FakeSleep, notification, slack
from support.notify_loopback import Reply, WebhookServer
from support.postgres_local import LocalPostgres
from support.records import alert
from support.stages import StageProcesses, wait_until

from finsent.alerts.notify.delivery import DeliveryLog, DeliveryResult, deliver
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.core.records import encode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import Store, deliveries, make_engine


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


# -- the notifier against a real broker ------------------------------------------------------

ONE_CHANNEL = """
grouping: {group_by: key, group_wait: 0s, group_interval: 10s, repeat_interval: 4h}
channels:
  ops: {type: slack, webhook_env: OPS_WEBHOOK}
routes:
  - {match: "*", channels: [ops]}
"""


@contextmanager
def server_read_only(server: LocalPostgres) -> Iterator[None]:
    """The whole server refuses writes, in the sessions already open too (a reload applies it
    to them), as a database failed over to a read-only replica does; writable again after."""
    conninfo = f"host={server.host} port={server.port} user=postgres dbname=postgres"

    def configure(statement: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(statement)
            conn.execute("SELECT pg_reload_conf()")

    configure("ALTER SYSTEM SET default_transaction_read_only = on")
    try:
        yield
    finally:
        configure("ALTER SYSTEM RESET default_transaction_read_only")


def send_alerts(settings: Settings, keys: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for key in keys:
        event = alert(id=key, key=key)
        producer.send(settings.topic("alerts"), key=key.encode(), value=encode(event))
    producer.close()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.postgres
def test_a_store_that_turns_read_only_while_the_notifier_runs_posts_nothing_twice(
    pipeline_settings: Settings,
    stages: StageProcesses,
    postgres_server: LocalPostgres,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ONE_CHANNEL)
    settings = pipeline_settings.model_copy(
        update={"alert_rules_file": rules, "store_url": postgres_url, "batch_max_wait_ms": 100}
    )
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    store = Store(settings.database_url)
    before = [f"ticker:B{i}" for i in range(4)]  # told while the store is writable
    during = [f"ticker:R{i}" for i in range(4)]  # read while it is read-only

    def committed() -> int:
        return sum(store.load_offsets("notifier").values())

    with WebhookServer() as slack:
        stages.env["OPS_WEBHOOK"] = slack.url("/ops/secret")
        stages.start("notifier", "notifier")
        send_alerts(settings, before)
        wait_until(
            lambda: committed() == len(before) and len(slack.received) == len(before), 90,
            "the first alerts told", context=stages.tails,
        )  # fmt: skip
        with server_read_only(postgres_server):
            send_alerts(settings, during)
            wait_until(
                lambda: stages.log("notifier").count("delivery log unavailable") >= len(during),
                60,
                "the notifier to find the store read-only",
                context=stages.tails,
            )
            assert len(slack.arrived) == len(before), "posted what it could not claim"
        wait_until(
            lambda: (
                committed() == len(before) + len(during)
                and len(slack.received) >= len(before) + len(during)
            ),
            90,
            "the alerts read meanwhile told once the store is writable",
            context=stages.tails,
        )
        groups = Counter(
            r.json()["blocks"][0]["text"]["text"].split(": ", 1)[1] for r in slack.received
        )
        assert all(200 <= r.status < 300 for r in slack.received)
    assert groups == Counter(before + during), f"posted twice: {groups - Counter(before + during)}"
    rows = store.query(deliveries)
    assert sorted((r["group_key"], r["status"]) for r in rows) == sorted(
        (key, "delivered") for key in before + during
    )
    # It rode out the read-only store: paused and retried its commit, never exited.
    assert stages.procs["notifier"].poll() is None
    assert "store sink failed" in stages.log("notifier")
