"""Email: the text + HTML message, and SMTP against a real loopback aiosmtpd server with
STARTTLS or implicit TLS and AUTH."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.notifications import (
    DASHBOARD,
    NOW,
    SMTP_PASSWORD,
    SMTP_USER,
    FakeSleep,
    assert_clean,
    email,
    notification,
    parts,
)
from support.notify_loopback import CertFiles, SmtpServer, make_cert

from finsent.alerts.notify.delivery import DeliveryResult, deliver
from finsent.alerts.notify.email import EmailNotifier, classify_smtp_failure, email_message
from finsent.alerts.notify.model import DeliveryError
from finsent.runtime.store import Store

# -- the message ------------------------------------------------------------------------


def test_email_message_headers_are_one_line_and_idempotent() -> None:
    msg = email_message(notification(nid="n/1 x"), "finsent <alerts@finsent.test>", ["a@b.test"])
    assert msg["Message-ID"] == "<finsent.n-1-x@finsent.test>"  # the id, made header-safe
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "a@b.test"
    assert msg["Date"] is None  # left to the sender: the message is a pure function
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]


# -- SMTP -------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (smtplib.SMTPAuthenticationError(454, b"temporary auth failure"), True),
        (smtplib.SMTPResponseException(552, b"message too big"), False),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPNotSupportedError("no STARTTLS"), False),
        (TimeoutError("slow"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (RuntimeError("odd"), False),
    ],
)
def test_smtp_failures_are_classified(exc: BaseException, transient: bool) -> None:
    assert classify_smtp_failure(exc)[0] is transient


def test_email_refuses_credentials_in_clear() -> None:
    with pytest.raises(ValueError, match="need starttls or ssl") as err:
        EmailNotifier(
            "email", "127.0.0.1", 25, "none", SMTP_USER, SecretStr(SMTP_PASSWORD),
            sender="a@b.test", recipients=("c@d.test",),
        )  # fmt: skip
    assert SMTP_PASSWORD not in str(err.value)


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
