"""Slack and email notifiers against real loopback servers, and ``deliver``'s retry and log.

The Slack webhook is a stdlib HTTP server and the mail server is aiosmtpd with STARTTLS (or
implicit TLS) and AUTH; tests parse what arrived. ``deliver`` gets a fake ``sleep``, so outages
with backoff take no real time.
"""

from __future__ import annotations

import logging
import smtplib
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.notify_loopback import CertFiles, Reply, SmtpServer, WebhookServer, make_cert
from support.stages import free_port

from finsent.alerts.notifiers import (
    DeliveryError,
    DeliveryResult,
    EmailNotifier,
    Notification,
    Notifier,
    SlackNotifier,
    deliver,
    email_message,
    safe_url,
    scrub,
    slack_payload,
)
from finsent.core.records import Alert, Headline
from finsent.runtime.store import Store, deliveries

NOW = datetime(2024, 5, 1, 14, 20, tzinfo=UTC)
WEBHOOK_TOKEN = "xoxWebhookSeCrEt7f3a9c2d41"  # distinctive: searched for in every output
WEBHOOK_PATH = f"/services/T0FINSENT/B0FINSENT/{WEBHOOK_TOKEN}"
SMTP_USER = "alerts@finsent.test"
SMTP_PASSWORD = "smtp-PaSsW0rd-e4c1b7"
DASHBOARD = "https://dash.example.com/alerts/abc123?tab=evidence&range=1d"
HOSTILE = "<script>alert(1)</script> Bank <b>run</b> & panic <!channel>"


def headline(i: int, title: str, score: float, tokens: tuple[str, ...], url: str = "") -> Headline:
    return Headline(
        id=f"h{i}",
        title=title,
        score=score,
        source=f"wire{i}",
        url=url,
        top_tokens=tokens,
    )


def firing_alert(key: str = "topic:Financials", **changes: object) -> Alert:
    alert = Alert(
        id="a1",
        key=key,
        state="firing",
        severity="critical",
        rule="negative-share-spike",
        window_start=datetime(2024, 5, 1, 14, 0, tzinfo=UTC),
        window_end=datetime(2024, 5, 1, 14, 15, tzinfo=UTC),
        neg_share=0.62,
        baseline_mean=0.21,
        baseline_std=0.05,
        zscore=4.31,
        count=37,
        headlines=(
            headline(1, "Rates rally lifts bank shares", 0.9, ("rally",)),  # not contributing
            headline(
                2,
                "Regional bank losses deepen as deposits flee",
                -0.91,
                ("losses", "flee"),
                url="https://news.example.com/a?id=2&x=1",
            ),
            headline(3, "Lender warns of default wave", -0.84, ("default", "warns")),
            headline(4, HOSTILE, -0.77, ("panic", "run"), url="javascript:alert(1)"),
        ),
        started_at=datetime(2024, 5, 1, 14, 0, tzinfo=UTC),
        updated_at=datetime(2024, 5, 1, 14, 15, tzinfo=UTC),
        message="topic:Financials: negative share spiked to 62%",
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


def resolved_alert(key: str = "topic:Financials") -> Alert:
    return firing_alert(
        key,
        state="resolved",
        neg_share=0.18,
        zscore=0.42,
        count=30,
        window_start=datetime(2024, 5, 1, 15, 0, tzinfo=UTC),
        window_end=datetime(2024, 5, 1, 15, 15, tzinfo=UTC),
    )


def notification(
    kind: str = "firing", alerts: tuple[Alert, ...] | None = None, nid: str = "n-1"
) -> Notification:
    return Notification(
        id=nid,
        group_key="topic:Financials",
        kind=kind,  # type: ignore[arg-type]
        alerts=alerts or (firing_alert(),),
        dashboard_url=DASHBOARD,
    )


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(store_path: str) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("tls"))


def slack(server: WebhookServer, **kwargs: object) -> SlackNotifier:
    return SlackNotifier("slack-ops", SecretStr(server.url(WEBHOOK_PATH)), **kwargs)  # type: ignore[arg-type]


def email(
    server: SmtpServer | int,
    cert: CertFiles,
    *,
    security: str = "starttls",
    password: str = SMTP_PASSWORD,
) -> EmailNotifier:
    return EmailNotifier(
        "email-oncall",
        "127.0.0.1",
        server if isinstance(server, int) else server.port,
        security,  # type: ignore[arg-type]
        SMTP_USER,
        SecretStr(password),
        sender="finsent <alerts@finsent.test>",
        recipients=("oncall@example.com", "risk@example.com"),
        timeout_s=5,
        tls_context=cert.client_context(),
    )


def all_text(block: object) -> str:
    """Every string inside a Block Kit structure, joined."""
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        return "\n".join(all_text(v) for v in block.values())
    if isinstance(block, list | tuple):
        return "\n".join(all_text(v) for v in block)
    return ""


# -- content ------------------------------------------------------------------------


def test_slack_payload_content() -> None:
    payload = slack_payload(notification())
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header"
    assert "FIRING (critical): topic:Financials" in blocks[0]["text"]["text"]
    text = all_text(blocks)
    assert "topic:Financials" in text
    assert "2024-05-01 14:00–14:15 UTC" in text
    assert "negative share 62% against a baseline of 21% ± 5.0% (z = 4.3, 37 stories)" in text
    # The three most negative headlines, attended words in bold; the positive one is left out.
    assert "Regional bank *losses* deepen as deposits *flee*" in text
    assert "Lender *warns* of *default* wave" in text
    assert "Rates rally" not in text
    # Feed text cannot inject Slack markup (mentions, links) or HTML.
    assert "<script>" not in text and "<!channel>" not in text
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; Bank &lt;b&gt;*run*&lt;/b&gt; &amp; *panic*" in text
    )
    assert "&lt;!channel&gt;" in text
    assert "javascript:" not in text  # a non-http link is dropped, the source name kept
    assert "<https://news.example.com/a?id=2&amp;x=1|wire2>" in text
    button = blocks[-1]["elements"][0]
    assert blocks[-1]["type"] == "actions" and button["type"] == "button"
    assert button["url"] == DASHBOARD
    assert "FIRING (critical) topic:Financials" in payload["text"]
    assert "Open in dashboard" in payload["text"]


def test_resolved_and_grouped_notices() -> None:
    n = notification(
        "resolved", alerts=(resolved_alert(), resolved_alert("ticker:JPM")), nid="n-res"
    )
    text = all_text(slack_payload(n)["blocks"])
    assert "RESOLVED" in text and "topic:Financials" in text and "ticker:JPM" in text
    assert text.count("Back to baseline") == 2
    assert "losses" not in text  # a resolved notice lists no headlines
    msg = email_message(n, "alerts@finsent.test", ["oncall@example.com"])
    assert msg["Subject"] == "[finsent] RESOLVED (critical) topic:Financials: 2 series"
    body = msg.get_body(("plain",))
    assert body is not None
    plain = body.get_content()
    assert plain.count("Back to baseline") == 2 and "ticker:JPM" in plain


def test_a_long_group_stays_within_block_kit_limits() -> None:
    alerts = tuple(firing_alert(f"ticker:T{i}") for i in range(30))
    blocks = slack_payload(notification(alerts=alerts))["blocks"]
    assert len(blocks) <= 50
    assert "18 more series" in all_text(blocks)
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


def test_safe_url_and_scrub() -> None:
    assert safe_url("javascript:alert(1)") == ""
    assert safe_url("/relative") == ""
    assert safe_url('https://x.test/a b"<>|') == "https://x.test/a%20b%22%3C%3E%7C"
    text = "POST https://hooks.test/services/T/B/tok%2Fen failed for tok/en and pw"
    assert scrub(text, ["tok/en", SecretStr("pw"), None]) == (
        "POST https://hooks.test/services/T/B/*** failed for *** and ***"
    )


# -- Slack over HTTP ------------------------------------------------------------------


def test_slack_webhook_receives_block_kit(store: Store) -> None:
    with WebhookServer() as server:
        result = deliver(notification(), slack(server), store, now=lambda: NOW)
    assert result == DeliveryResult(status="delivered", attempts=1, error="")
    (post,) = server.received
    assert post.path == WEBHOOK_PATH
    assert post.headers["Content-Type"] == "application/json"
    payload = post.json()
    assert payload == slack_payload(notification())
    text = all_text(payload["blocks"])
    for needle in ("topic:Financials", "14:00–14:15 UTC", "21% ± 5.0%", "z = 4.3", "37 stories"):
        assert needle in text
    assert len([b for b in payload["blocks"] if "Top headlines" in all_text(b)]) == 1
    for word in ("losses", "flee", "warns", "default", "panic", "run"):
        assert f"*{word}*" in text
    assert payload["blocks"][-1]["elements"][0]["url"] == DASHBOARD
    row = store.delivery("n-1", "slack-ops")
    assert row is not None and row["status"] == "delivered" and row["attempts"] == 1
    assert (row["group_key"], row["kind"]) == ("topic:Financials", "firing")


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
    caplog.set_level(logging.INFO, logger="finsent.alerts.notifiers")
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


def test_slack_timeout_and_refused_connection_are_transient() -> None:
    slow = WebhookServer([Reply(200, delay_s=0.6)])
    with slow, pytest.raises(DeliveryError, match="timed out") as timed_out:
        slack(slow, timeout_s=0.2).send(notification())
    assert timed_out.value.transient
    refused = SlackNotifier("slack-ops", SecretStr(f"http://127.0.0.1:{free_port()}/x"))
    with pytest.raises(DeliveryError, match="connection failed") as no_server:
        refused.send(notification())
    assert no_server.value.transient


def test_slack_refuses_a_cleartext_remote_url_without_showing_it() -> None:
    with pytest.raises(ValueError, match="must be https") as err:
        SlackNotifier("slack-ops", SecretStr(f"http://hooks.example.com{WEBHOOK_PATH}"))
    assert WEBHOOK_TOKEN not in str(err.value)


def test_a_notifier_bug_is_a_permanent_failure(store: Store) -> None:
    class Broken:
        channel = "broken"

        def send(self, notification: Notification) -> None:
            raise KeyError("oops")

    assert isinstance(Broken(), Notifier)
    result = deliver(notification(), Broken(), store, now=lambda: NOW, sleep=FakeSleep())
    assert (result.status, result.attempts) == ("failed", 1)
    assert "KeyError" in result.error


# -- email over SMTP --------------------------------------------------------------------


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


def test_email_over_starttls_with_auth(cert: CertFiles, store: Store) -> None:
    server = SmtpServer(mode="starttls", cert=cert, username=SMTP_USER, password=SMTP_PASSWORD)
    with server:
        result = deliver(notification(), email(server, cert), store, now=lambda: NOW)
    assert result == DeliveryResult(status="delivered", attempts=1, error="")
    (got,) = server.messages
    assert got.tls and got.authenticated
    assert any(ok for _, ok in server.auth_attempts)
    assert got.mail_from == "alerts@finsent.test"
    assert got.rcpt_tos == ("oncall@example.com", "risk@example.com")
    msg = got.message
    # A 70-78 character subject is folded onto its own line (valid RFC 5322, and clients
    # strip the space left by unfolding; Python's parser keeps it).
    assert msg["Subject"].strip() == (
        "[finsent] FIRING (critical) topic:Financials: negative share 62% (z = 4.3)"
    )
    assert msg["Message-ID"] == "<finsent.n-1@finsent.test>"
    assert msg["Date"] and msg.get_content_type() == "multipart/alternative"
    text, html_body = parts(msg)

    for body in (text, html_body):
        assert "topic:Financials" in body
        assert "2024-05-01 14:00–14:15 UTC" in body
        assert "62% against a baseline of 21% ± 5.0% (z = 4.3, 37 stories)" in body
        assert "Rates rally" not in body

    assert "Regional bank *losses* deepen as deposits *flee*" in text
    assert "Lender *warns* of *default* wave" in text
    assert "https://news.example.com/a?id=2&x=1" in text
    assert f"Dashboard: {DASHBOARD}" in text

    assert "<mark><strong>losses</strong></mark>" in html_body
    assert "<mark><strong>default</strong></mark>" in html_body
    assert '<a href="https://news.example.com/a?id=2&amp;x=1">wire2</a>' in html_body
    assert f'<a href="{DASHBOARD.replace("&", "&amp;")}">Open in dashboard</a>' in html_body
    # The hostile headline arrives as text, never as markup.
    assert "<script>" not in html_body and "<b>run</b>" not in html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Bank &lt;b&gt;" in html_body
    assert "javascript:" not in html_body


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_over_implicit_tls(cert: CertFiles, store: Store) -> None:
    server = SmtpServer(mode="ssl", cert=cert, username=SMTP_USER, password=SMTP_PASSWORD)
    with server:
        result = deliver(
            notification(), email(server, cert, security="ssl"), store, now=lambda: NOW
        )
    assert result.status == "delivered"
    (got,) = server.messages
    assert got.tls and got.authenticated


def test_email_rejects_an_untrusted_certificate(cert: CertFiles, tmp_path: Path) -> None:
    other = make_cert(tmp_path)  # the client trusts a different certificate
    server = SmtpServer(mode="starttls", cert=cert, username=SMTP_USER, password=SMTP_PASSWORD)
    with server, pytest.raises(DeliveryError, match="certificate") as err:
        email(server, other).send(notification())
    assert not err.value.transient
    assert server.messages == []


def test_email_transient_reply_then_recovery_delivers_once(cert: CertFiles, store: Store) -> None:
    server = SmtpServer(
        mode="starttls",
        cert=cert,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        rcpt_replies=["451 4.3.0 try again later"] * 2,  # both recipients: nothing sent
        data_replies=["421 4.3.2 service shutting down"],
    )
    sleep = FakeSleep()
    with server:
        result = deliver(notification(), email(server, cert), store, now=lambda: NOW, sleep=sleep)
    assert (result.status, result.attempts) == ("delivered", 3)
    assert "421" in result.error
    assert sleep.waits == [1, 2]
    assert len(server.messages) == 1 and server.data_calls == 2


def test_email_permanent_reply_is_not_retried(cert: CertFiles, store: Store) -> None:
    server = SmtpServer(
        mode="starttls",
        cert=cert,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        rcpt_replies=["550 5.1.1 no such user"] * 2,
    )
    sleep = FakeSleep()
    with server:
        result = deliver(notification(), email(server, cert), store, now=lambda: NOW, sleep=sleep)
    assert (result.status, result.attempts, sleep.waits) == ("failed", 1, [])
    assert "550 5.1.1 no such user" in result.error
    assert server.messages == []


def test_email_auth_failure_is_permanent(cert: CertFiles) -> None:
    server = SmtpServer(mode="starttls", cert=cert, username=SMTP_USER, password="the-real-one")
    with server, pytest.raises(DeliveryError, match="authentication failed: 535") as err:
        email(server, cert).send(notification())
    assert not err.value.transient
    assert server.auth_attempts and not any(ok for _, ok in server.auth_attempts)


def test_email_refuses_credentials_in_clear() -> None:
    with pytest.raises(ValueError, match="need starttls or ssl") as err:
        EmailNotifier(
            "email", "127.0.0.1", 25, "none", SMTP_USER, SecretStr(SMTP_PASSWORD),
            sender="a@b.test", recipients=("c@d.test",),
        )  # fmt: skip
    assert SMTP_PASSWORD not in str(err.value)


# -- secrets ------------------------------------------------------------------------------


def assert_clean(text: str) -> None:
    for secret in (WEBHOOK_TOKEN, WEBHOOK_PATH, SMTP_PASSWORD):
        assert secret not in text


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


def test_smtp_errors_never_carry_the_password() -> None:
    # A server that echoed the password back in a reply would still not leak it.
    notifier = EmailNotifier(
        "email", "127.0.0.1", 1, "starttls", SMTP_USER, SecretStr(SMTP_PASSWORD),
        sender="a@b.test", recipients=("c@d.test",),
    )  # fmt: skip
    reply = smtplib.SMTPAuthenticationError(535, f"bad password {SMTP_PASSWORD}".encode())

    def fake_transmit(msg: EmailMessage) -> dict:
        raise reply

    notifier._transmit = fake_transmit  # type: ignore[method-assign]
    with pytest.raises(DeliveryError) as err:
        notifier.send(notification())
    assert_clean(str(err.value))
    assert "bad password ***" in str(err.value)


def test_novelty_weighted_evidence_is_shown_when_the_record_has_it() -> None:
    if "weighted_neg_share" not in Alert.__dataclass_fields__:
        pytest.skip("this Alert record has no novelty-weighted fields")
    alert = firing_alert(weighted_neg_share=0.55, weighted_count=30.2)
    n = notification(alerts=(alert,))
    assert "novelty-weighted 55% of 30.2" in all_text(slack_payload(n)["blocks"])
    text, html_body = parts(email_message(n, "a@b.test", ["c@d.test"]))
    assert "novelty-weighted 55% of 30.2" in text and "novelty-weighted 55% of 30.2" in html_body
