"""Builders for the notify tests: alerts with hostile headlines, notifications, notifiers aimed
at the loopback servers of ``support.notify_loopback``, and a fake ``sleep``.

The secrets are distinctive strings that every secrecy test searches for in every output.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

from pydantic import SecretStr

from finsent.alerts.notify.email import EmailNotifier
from finsent.alerts.notify.model import Notification
from finsent.alerts.notify.slack import SlackNotifier
from finsent.core.records import Alert, Headline
from support.notify_loopback import CertFiles, SmtpServer, WebhookServer
from support.records import alert as make_alert

NOW = datetime(2024, 5, 1, 14, 20, tzinfo=UTC)
WEBHOOK_TOKEN = "xoxWebhookSeCrEt7f3a9c2d41"
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
    """A critical spike whose headlines hold a positive story, a hostile one with a
    ``javascript:`` link, and two plain negative ones."""
    alert = make_alert(
        key=key,
        severity="critical",
        window_start=datetime(2024, 5, 1, 14, 0, tzinfo=UTC),
        window_end=datetime(2024, 5, 1, 14, 15, tzinfo=UTC),
        neg_share=0.62,
        baseline_mean=0.21,
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
    """Records the waits ``deliver`` asks for, so backoff takes no real time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def slack(server: WebhookServer, **kwargs: object) -> SlackNotifier:
    return SlackNotifier("slack-ops", SecretStr(server.url(WEBHOOK_PATH)), **kwargs)  # type: ignore[arg-type]


def email(
    server: SmtpServer | int,
    cert: CertFiles,
    *,
    security: str = "starttls",
    password: str = SMTP_PASSWORD,
) -> EmailNotifier:
    """An SMTP notifier for the loopback server (or a bare port), trusting ``cert``."""
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


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies of a message."""
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


def assert_clean(text: str) -> None:
    for secret in (WEBHOOK_TOKEN, WEBHOOK_PATH, SMTP_PASSWORD):
        assert secret not in text
