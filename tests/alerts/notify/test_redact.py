"""Secrets never reach an error, a log record or the delivery log: unit checks of the
redactor, then every failure path against real servers with all logging on."""

from __future__ import annotations

import logging
import sys
import traceback

import pytest
from pydantic import SecretStr
from support.notifications import (
    NOW,
    SMTP_USER,
    WEBHOOK_PATH,
    WEBHOOK_TOKEN,
    FakeSleep,
    assert_clean,
    email,
    notification,
    slack,
)
from support.notify_loopback import CertFiles, Reply, SmtpServer, WebhookServer

from finsent.alerts.notify.delivery import DeliveryResult, deliver
from finsent.alerts.notify.model import DeliveryError, Notifier
from finsent.alerts.notify.redact import REDACTED, REDACTOR, Redactor, redacting_logger, scrub
from finsent.alerts.notify.slack import SlackNotifier
from finsent.app.ports import free_port
from finsent.core.safety import SecretRegistry
from finsent.runtime.store import Store, deliveries


def test_scrub_replaces_secrets_in_every_encoding() -> None:
    text = "POST https://hooks.test/services/T/B/tok%2Fen failed for tok/en and pw"
    assert scrub(text, ["tok/en", SecretStr("pw"), None]) == (
        "POST https://hooks.test/services/T/B/*** failed for *** and ***"
    )


def test_a_webhook_url_scrubs_with_its_path_query_and_long_path_tokens() -> None:
    url = "https://hooks.test/services/T0/B0/abcdefghijklmnop?key=v"
    text = f"{url} | /services/T0/B0/abcdefghijklmnop | key=v | abcdefghijklmnop | T0/B0"
    assert scrub(text, [url]) == f"{REDACTED} | {REDACTED} | {REDACTED} | {REDACTED} | T0/B0"


def test_notifiers_register_with_the_process_wide_list_the_settings_use_too() -> None:
    REDACTOR.register("notify-registered-SeCrEt-77a1")
    assert scrub("x notify-registered-SeCrEt-77a1 y") == f"x {REDACTED} y"


def test_the_redactor_scrubs_log_records_and_their_tracebacks() -> None:
    redactor = Redactor(SecretRegistry())
    redactor.register("hunter2-SeCrEt", "")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s", ("hunter2-SeCrEt",), None)
    try:
        raise RuntimeError("boom hunter2-SeCrEt")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert redactor.filter(record)
    assert record.getMessage() == f"pw={REDACTED}"
    assert record.exc_text is not None and "hunter2-SeCrEt" not in record.exc_text


def test_redacting_logger_installs_the_filter_once() -> None:
    logger = redacting_logger("finsent.tests.redact")
    assert redacting_logger("finsent.tests.redact") is logger
    assert len([f for f in logger.filters if isinstance(f, Redactor)]) == 1


def test_no_secret_in_logs_exceptions_or_the_delivery_log(
    cert: CertFiles, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything, including httpx's request log and the SMTP server's own debug lines.
    caplog.set_level(logging.DEBUG)
    errors: list[DeliveryError] = []
    results: list[DeliveryResult] = []

    def attempt(notifier: Notifier, nid: str) -> None:
        with pytest.raises(DeliveryError) as err:
            notifier.send(notification(nid=nid))
        errors.append(err.value)
        results.append(
            deliver(notification(nid=nid), notifier, store, now=lambda: NOW, sleep=FakeSleep())
        )

    dead_port = free_port()
    attempt(
        SlackNotifier("slack-dead", SecretStr(f"http://127.0.0.1:{dead_port}{WEBHOOK_PATH}")), "s1"
    )
    # The server echoes the request path in its error body, as a misbehaving proxy might.
    echo = Reply(500, f"upstream failed for POST {WEBHOOK_PATH}".encode())
    with WebhookServer(default=echo) as server:
        attempt(slack(server), "s2")
    with WebhookServer(default=Reply(404, f"no_service {WEBHOOK_TOKEN}".encode())) as server:
        attempt(slack(server), "s3")
    server = SmtpServer(mode="starttls", cert=cert, username=SMTP_USER, password="the-real-one")
    with server:
        attempt(email(server, cert), "e1")
    attempt(email(free_port(), cert), "e2")  # nothing listens: connection refused

    assert [r.status for r in results] == ["failed"] * 5
    assert [e.transient for e in errors] == [True, True, False, False, True]
    assert "***" in str(errors[1]) and "***" in str(errors[2])  # scrubbed, not dropped
    for err in errors:
        assert_clean(str(err))
        assert_clean(repr(err))
        assert_clean("".join(traceback.format_exception(err)))
        assert err.__cause__ is None and err.__context__ is None
    for result in results:
        assert_clean(result.error)
    rows = store.query(deliveries)
    assert len(rows) == 5
    assert_clean(repr(rows))
    assert "HTTP Request: POST" in caplog.text  # httpx did log its requests...
    assert_clean(caplog.text)  # ...with the URL scrubbed
    quiet = SlackNotifier("slack-ops", SecretStr(f"http://127.0.0.1:{dead_port}{WEBHOOK_PATH}"))
    assert_clean(repr(quiet) + repr(email(dead_port, cert)))
