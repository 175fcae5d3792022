"""Email: a notification as a text + HTML message, sent over SMTP (STARTTLS or implicit TLS).

The SMTP password is registered with the redactor, and every failure is classified as
transient (4xx replies, timeouts, dropped connections) or permanent (5xx, bad credentials,
an untrusted certificate) and raised outside the ``except`` block, so no chained library
exception rides along.
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from finsent.alerts.notify.content import (
    alert_status,
    attended_tokens,
    figures_text,
    highlight_spans,
    one_line,
    summary,
    top_headlines,
    window_text,
)
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.alerts.notify.redact import REDACTOR, redacting_logger, scrub
from finsent.core.records import Headline
from finsent.core.safety import encoded_web_link

if TYPE_CHECKING:
    from finsent.alerts.rules import EmailChannel

log = redacting_logger(__name__)

Security = Literal["starttls", "ssl", "none"]


def _text_headline(i: int, h: Headline) -> list[str]:
    tokens = attended_tokens(h)
    title = "".join(f"*{t}*" if hot else t for t, hot in highlight_spans(h.title, tokens))
    lines = [f"  {i}. {title} ({h.score:+.2f})"]
    if tokens:
        lines.append("     attended: " + ", ".join(tokens))
    url = encoded_web_link(h.url)
    if url or h.source:
        lines.append("     " + " ".join(p for p in (one_line(h.source, 80), url) if p))
    return lines


def _text_body(n: Notification) -> str:
    lines = [summary(n), ""]
    for a in n.alerts:
        lines.append(f"{alert_status(a)} {a.key}")
        lines.append(f"Window: {window_text(a)}")
        if a.state == "resolved":
            lines.append(f"Back to baseline: {figures_text(a)}")
        else:
            lines.append(f"Score: {figures_text(a)}")
            headlines = top_headlines(a)
            if headlines:
                lines.append("Top headlines (attended words in *stars*):")
                for i, h in enumerate(headlines, 1):
                    lines.extend(_text_headline(i, h))
        lines.append("")
    dashboard = encoded_web_link(n.dashboard_url)
    if dashboard:
        lines.append(f"Dashboard: {dashboard}")
    return "\n".join(lines) + "\n"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_headline(h: Headline) -> str:
    tokens = attended_tokens(h)
    title = "".join(
        f"<mark><strong>{_e(t)}</strong></mark>" if hot else _e(t)
        for t, hot in highlight_spans(h.title, tokens)
    )
    parts = [f'{title} <span style="color:#666">({h.score:+.2f})</span>']
    url = encoded_web_link(h.url)
    label = _e(one_line(h.source, 80) or "source")
    if url:
        parts.append(f' — <a href="{_e(url)}">{label}</a>')
    elif h.source:
        parts.append(f" — {label}")
    if tokens:
        words = ", ".join(f"<strong>{_e(t)}</strong>" for t in tokens)
        parts.append(f'<br><small style="color:#666">attended: {words}</small>')
    return "<li>" + "".join(parts) + "</li>"


def _html_body(n: Notification) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html><body style="font-family:sans-serif">',
        f"<h2>{_e(summary(n))}</h2>",
    ]
    for a in n.alerts:
        colour = "#2e7d32" if a.state == "resolved" else "#c62828"
        out.append('<div style="margin-bottom:1em">')
        out.append(
            f'<p><strong style="color:{colour}">{_e(alert_status(a))}</strong> '
            f"<code>{_e(a.key)}</code><br>"
            f"Window: {_e(window_text(a))}<br>"
        )
        if a.state == "resolved":
            out.append(f"Back to baseline: {_e(figures_text(a))}</p>")
        else:
            out.append(f"Score: {_e(figures_text(a))}</p>")
            headlines = top_headlines(a)
            if headlines:
                out.append("<p>Top headlines (attended words highlighted):</p><ol>")
                out.extend(_html_headline(h) for h in headlines)
                out.append("</ol>")
        out.append("</div>")
    dashboard = encoded_web_link(n.dashboard_url)
    if dashboard:
        out.append(f'<p><a href="{_e(dashboard)}">Open in dashboard</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def email_message(n: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A text + HTML alternative message with the Slack message's content. ``Date`` is left to
    the sender, so this stays a pure function of the notification."""
    msg = EmailMessage()
    msg["Subject"] = one_line(f"[finsent] {summary(n)}")
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    domain = sender.rpartition("@")[2].strip(" >") or "finsent.invalid"
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "-", n.id)[:120]
    # The idempotency key as Message-ID: a mail system that sees a resend can drop it.
    msg["Message-ID"] = f"<finsent.{safe_id}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    msg.set_content(_text_body(n))
    msg.add_alternative(_html_body(n), subtype="html")
    return msg


def _smtp_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify_smtp_failure(exc: BaseException) -> tuple[bool, str]:
    """(transient?, description) of an SMTP send failure."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{rcpt}: {code} {_smtp_text(resp)}" for rcpt, (code, resp) in exc.recipients.items()
        )
        return any(400 <= c < 500 for c in codes), f"all recipients refused ({detail})"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # 535 (bad credentials) will not fix itself; 454 is the server's own trouble.
        transient = 400 <= exc.smtp_code < 500
        return transient, f"authentication failed: {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        transient = 400 <= exc.smtp_code < 500
        return transient, f"server replied {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True, f"server disconnected ({exc})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return False, f"server does not support a required extension ({exc})"
    if isinstance(exc, smtplib.SMTPException):  # e.g. no usable AUTH mechanism
        return False, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False, f"TLS certificate rejected ({exc.verify_message or exc})"
    if isinstance(exc, TimeoutError):
        return True, "timed out"
    if isinstance(exc, OSError):  # refused, reset, unreachable, TLS handshake cut short
        return True, f"connection failed ({type(exc).__name__}: {exc})"
    return False, f"{type(exc).__name__}: {exc}"


class EmailNotifier:
    """Sends the notification by SMTP, over STARTTLS or implicit TLS ("ssl"), with optional
    AUTH. "none" is plain SMTP and refuses credentials, which it would send in clear."""

    def __init__(
        self,
        channel: str,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: SecretStr | None,
        sender: str,
        recipients: tuple[str, ...],
        timeout_s: float = 10,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"{channel}: security must be starttls, ssl or none")
        if security == "none" and (username or password):
            raise ValueError(f"{channel}: SMTP credentials need starttls or ssl")
        if (password is None) != (username is None):
            raise ValueError(f"{channel}: SMTP auth needs both a username and a password")
        if not recipients:
            raise ValueError(f"{channel}: no recipients")
        self.channel = channel
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.sender = sender
        self.recipients = tuple(recipients)
        self.timeout_s = timeout_s
        self._password = password
        self._tls = tls_context
        self._secrets = (password.get_secret_value(),) if password else ()
        REDACTOR.register(*self._secrets)

    @classmethod
    def for_channel(
        cls, name: str, channel: EmailChannel, password: SecretStr | None, timeout_s: float = 10
    ) -> EmailNotifier:
        """The notifier of a rules file's email channel, its password from the environment."""
        return cls(
            name,
            host=channel.host,
            port=channel.port,
            security=channel.security,
            username=channel.username,
            password=password,
            sender=channel.sender,
            recipients=channel.to,
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"EmailNotifier(channel={self.channel!r}, host={self.host!r}, port={self.port})"

    def send(self, notification: Notification) -> None:
        msg = email_message(notification, self.sender, self.recipients)
        msg["Date"] = formatdate(usegmt=True)
        failure: DeliveryError | None = None
        refused: dict[str, Any] = {}
        try:
            refused = self._transmit(msg)
        except Exception as exc:  # classified below; every SMTP/socket/TLS error lands here
            transient, detail = classify_smtp_failure(exc)
            failure = DeliveryError(
                f"smtp {self.host}:{self.port} ({self.channel}): {detail}",
                transient=transient,
                secrets=self._secrets,
            )
        if failure is not None:  # outside the except block: no chained library exception
            raise failure
        if refused:
            # Some recipients have it; a retry would send it to them again, so only warn.
            log.warning(
                "%s: message %s not accepted for %s",
                self.channel,
                notification.id,
                scrub(", ".join(f"{r} ({c})" for r, (c, _) in refused.items()), self._secrets),
            )

    def _transmit(self, msg: EmailMessage) -> dict[str, Any]:
        context = self._tls or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username and self._password:
                smtp.login(self.username, self._password.get_secret_value())
            return smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        finally:
            # Not `with smtp`: its QUIT raises on an odd reply, which after an accepted DATA
            # would turn a delivered message into a retried one.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
