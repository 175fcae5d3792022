"""Slack and email notifiers, and ``deliver``: send a notification once, retrying what may help.

A ``Notification`` is one alert group's lifecycle event (firing, resolved, or a repeat of a group
that is still firing). Each notifier renders it (``slack_payload``, ``email_message``: the same
content in Block Kit, plain text and HTML) and sends it, raising ``DeliveryError`` whose
``transient`` flag says whether trying again could help (Alertmanager's ``notify`` shape).

``deliver`` wraps one send in the delivery log (``Store.delivery`` / ``Store.record_delivery``,
keyed by notification id and channel): a notification the log already marks delivered is skipped,
so a restarted engine never re-sends; transient failures are retried with exponential backoff;
permanent ones are logged and recorded at once.

Secrets (the webhook URL, whose path is the credential, and the SMTP password) never appear in
an error message, a log record or the delivery log: notifiers register them with a redactor that
``scrub``s every error string and the records of the HTTP client's logger, and errors are raised
outside the ``except`` block so no chained library exception (which may carry the URL) rides along.
"""

from __future__ import annotations

import html
import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)

from finsent.core.records import Alert, Headline
from finsent.runtime.store import Store

log = logging.getLogger(__name__)

NotificationKind = Literal["firing", "resolved", "repeat"]
Security = Literal["starttls", "ssl", "none"]

MAX_HEADLINES = 3
MAX_SLACK_ALERTS = 12  # Block Kit allows 50 blocks per message; each alert takes up to three
MAX_TITLE_CHARS = 300  # a hostile feed must not push a section past Slack's 3000-char limit
MAX_URL_CHARS = 2000  # longer feed links are dropped rather than cut into broken ones
REDACTED = "***"


# -- the notification ---------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    id: str  # idempotency key; the delivery log is keyed on (id, channel)
    group_key: str  # e.g. "topic:Financials"
    kind: NotificationKind
    alerts: tuple[Alert, ...]  # the group's alerts, newest event of each
    dashboard_url: str  # link to the alert in the dashboard

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a Notification needs an id")
        if not self.alerts:
            raise ValueError("a Notification needs at least one alert")


@dataclass(frozen=True)
class DeliveryResult:
    status: Literal["delivered", "skipped", "failed"]
    attempts: int  # sends made by this call (0 when skipped)
    error: str = ""  # the last failure seen, scrubbed; may be set even when finally delivered


# -- secrets ------------------------------------------------------------------


def scrub(text: str, secrets: Iterable[str | SecretStr | None]) -> str:
    """``text`` with every secret, and its percent-encoded and -decoded forms, replaced."""
    variants: set[str] = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            variants |= {value, quote(value, safe=""), quote(value, safe="/:"), unquote(value)}
    # Longest first, so a URL goes whole before its own path would leave the host behind.
    for variant in sorted(variants, key=len, reverse=True):
        if variant:
            text = text.replace(variant, REDACTED)
    return text


def _url_secrets(url: str) -> tuple[str, ...]:
    """A webhook URL's credential parts: the URL, its path and query, and its long path tokens."""
    parts = urlsplit(url)
    tokens = [seg for seg in parts.path.split("/") if len(seg) >= 12]
    return tuple(
        s for s in (url, parts.path if len(parts.path) > 1 else "", parts.query, *tokens) if s
    )


class _Redactor(logging.Filter):
    """Scrubs registered secrets from log records: installed on this module's logger and on the
    HTTP client's, which logs every request URL (the webhook's path is its credential)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.secrets: tuple[str, ...] = ()  # replaced whole, so readers need no lock

    def register(self, *secrets: str) -> None:
        with self._lock:
            self.secrets = tuple(sorted({*self.secrets, *(s for s in secrets if s)}))

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        clean = scrub(message, secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), secrets)
        return True


_REDACTOR = _Redactor()
# A logger's filters see only its own records, not its children's: name each one.
for _name in (
    __name__,
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
):
    logging.getLogger(_name).addFilter(_REDACTOR)


# -- errors and the notifier protocol -----------------------------------------


class DeliveryError(Exception):
    """A failed send. ``transient``: trying again may succeed (timeouts, 5xx, SMTP 4xx).
    ``retry_after``: the wait the endpoint asked for, in seconds, when it said. Its message is
    scrubbed of every registered secret at construction."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        secrets: Iterable[str | SecretStr | None] = (),
    ) -> None:
        super().__init__(scrub(message, (*secrets, *_REDACTOR.secrets)))
        self.transient = transient
        self.retry_after = retry_after


@runtime_checkable
class Notifier(Protocol):
    channel: str  # the channel's name from the routing rules, e.g. "slack-ops"

    def send(self, notification: Notification) -> None:
        """Deliver once or raise ``DeliveryError``."""
        ...


# -- shared content -----------------------------------------------------------

_STATUS = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}


def _pct(share: float) -> str:
    # Small figures (a baseline's spread) keep a decimal; "0%" would hide them.
    return f"{share:.1%}" if 0 < abs(share) < 0.1 else f"{share:.0%}"


def _window(a: Alert) -> str:
    start, end = a.window_start, a.window_end
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def _figures(a: Alert) -> str:
    text = (
        f"negative share {_pct(a.neg_share)} against a baseline of {_pct(a.baseline_mean)} "
        f"± {_pct(a.baseline_std)} (z = {a.zscore:.1f}, {a.count} stories)"
    )
    # Novelty-weighted evidence, when the record carries it (getattr: older records lack it):
    # it shows whether one syndicated story is behind the spike.
    weighted = getattr(a, "weighted_neg_share", None)
    weighted_count = getattr(a, "weighted_count", None)
    if weighted is not None and weighted_count is not None:
        text += f"; novelty-weighted {_pct(weighted)} of {weighted_count:.1f}"
    return text


def _alert_status(a: Alert) -> str:
    return f"{a.state.upper()} ({a.severity})"


def _group_severity(n: Notification) -> str:
    firing = [a for a in n.alerts if a.state == "firing"] or list(n.alerts)
    return "critical" if any(a.severity == "critical" for a in firing) else "warning"


def _summary(n: Notification) -> str:
    """One line for a Slack fallback or an email subject."""
    if len(n.alerts) == 1:
        a = n.alerts[0]
        tail = (
            "back to baseline" if a.state == "resolved" else f"negative share {_pct(a.neg_share)}"
        )
        return f"{_STATUS[n.kind]} ({a.severity}) {a.key}: {tail} (z = {a.zscore:.1f})"
    return f"{_STATUS[n.kind]} ({_group_severity(n)}) {n.group_key}: {len(n.alerts)} series"


def top_headlines(a: Alert, limit: int = MAX_HEADLINES) -> tuple[Headline, ...]:
    """The headlines that drove a negative spike: most negative first.

    The aggregator ranks by strength of either sign, so a strong positive story can be among
    them; it is shown only when there are too few negative ones."""
    return tuple(sorted(a.headlines, key=lambda h: h.score)[:limit])


def _tokens(h: Headline) -> tuple[str, ...]:
    """Attended words worth showing: no word-piece markers, no bare punctuation, no repeats."""
    seen: dict[str, str] = {}
    for token in h.top_tokens:
        word = token.strip().removeprefix("##")
        if any(ch.isalnum() for ch in word) and word.lower() not in seen:
            seen[word.lower()] = word
    return tuple(seen.values())


def highlight_spans(title: str, tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """``title`` cut into (text, attended?) pieces; a token matches whole words, any case."""
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    words = sorted({t for t in tokens if t}, key=len, reverse=True)
    if not words:
        return [(title, False)] if title else []
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
    )
    spans: list[tuple[str, bool]] = []
    pos = 0
    for match in pattern.finditer(title):
        if match.start() > pos:
            spans.append((title[pos : match.start()], False))
        spans.append((match.group(0), True))
        pos = match.end()
    if pos < len(title):
        spans.append((title[pos:], False))
    return spans


def safe_url(url: str) -> str:
    """An http(s) URL with unsafe characters percent-encoded, or "" for anything else
    (``javascript:``, relative paths): headline links come from feeds."""
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    # Spaces, quotes, <, >, | and control characters get encoded; the URL's own syntax stays.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def _plain_one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())  # no CR/LF: header injection
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- Slack --------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters; everything from a feed goes through this."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    url = safe_url(url)
    return f"<{slack_escape(url)}|{slack_escape(label)}>" if url else slack_escape(label)


def _slack_headline(i: int, h: Headline) -> str:
    tokens = _tokens(h)
    title = "".join(
        f"*{slack_escape(text)}*" if hot else slack_escape(text)
        for text, hot in highlight_spans(h.title, tokens)
    )
    line = f"{i}. {title} ({h.score:+.2f})"
    if h.url or h.source:
        line += " — " + _slack_link(h.url, _plain_one_line(h.source, 80) or "source")
    if tokens:
        line += "\n      _attended: " + ", ".join(slack_escape(t) for t in tokens) + "_"
    return line


def _slack_alert_blocks(a: Alert) -> list[dict[str, Any]]:
    emoji = (
        ":white_check_mark:"
        if a.state == "resolved"
        else (":red_circle:" if a.severity == "critical" else ":large_orange_circle:")
    )
    lines = [
        f"{emoji} *{_alert_status(a)}* {slack_escape(a.key)}",
        f"*Window:* {_window(a)}",
    ]
    if a.state == "resolved":
        lines.append(f"*Back to baseline:* {_figures(a)}")
    else:
        lines.append(f"*Score:* {_figures(a)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    ]
    headlines = top_headlines(a) if a.state != "resolved" else ()
    if headlines:
        text = "*Top headlines* (attended words in bold)\n" + "\n".join(
            _slack_headline(i, h) for i, h in enumerate(headlines, 1)
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return blocks


def slack_payload(n: Notification) -> dict[str, Any]:
    """A Block Kit message, with a plain ``text`` fallback for notifications and old clients."""
    header = f"{_STATUS[n.kind]} ({_group_severity(n)}): {n.group_key}"
    if len(n.alerts) > 1:
        header += f" — {len(n.alerts)} series"
    blocks: list[dict[str, Any]] = [
        # plain_text is shown literally, so it is not escaped; Slack caps a header at 150.
        {"type": "header", "text": {"type": "plain_text", "text": _plain_one_line(header, 150)}}
    ]
    shown = n.alerts[:MAX_SLACK_ALERTS]
    for i, a in enumerate(shown):
        if i:
            blocks.append({"type": "divider"})
        blocks.extend(_slack_alert_blocks(a))
    if len(n.alerts) > len(shown):
        more = f"…and {len(n.alerts) - len(shown)} more series: see the dashboard."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    dashboard = safe_url(n.dashboard_url)
    if dashboard:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in dashboard"},
                        "url": dashboard,
                        "action_id": "open_dashboard",
                    }
                ],
            }
        )
    fallback = [slack_escape(_summary(n))]
    for a in n.alerts[:5]:
        fallback.append(slack_escape(f"{_alert_status(a)} {a.key}, {_window(a)}: {_figures(a)}"))
    if dashboard:
        fallback.append(f"<{slack_escape(dashboard)}|Open in dashboard>")
    return {"text": "\n".join(fallback), "blocks": blocks}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:  # absent, or an HTTP date: let the backoff decide
        return None


class SlackNotifier:
    """Posts to a Slack incoming webhook. The URL is the credential: it is held as a
    ``SecretStr`` and never put in a message or log."""

    def __init__(self, channel: str, webhook_url: SecretStr, timeout_s: float = 10) -> None:
        url = webhook_url.get_secret_value()
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        # Plain http would send the credential in clear; only a local relay or test may use it.
        if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            raise ValueError(f"{channel}: the Slack webhook URL must be https (URL not shown)")
        self.channel = channel
        self.timeout_s = timeout_s
        self._url = webhook_url
        self._secrets = _url_secrets(url)
        _REDACTOR.register(*self._secrets)

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self.channel!r})"

    def send(self, notification: Notification) -> None:
        payload = slack_payload(notification)
        failure: DeliveryError | None = None
        response: httpx.Response | None = None
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                response = client.post(self._url.get_secret_value(), json=payload)
        except httpx.TimeoutException as exc:
            failure = self._error(f"timed out ({type(exc).__name__})", transient=True)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            failure = self._error(f"bad request setup ({type(exc).__name__}: {exc})", False)
        except httpx.HTTPError as exc:  # connect/read errors, resets, proxy trouble
            failure = self._error(f"connection failed ({type(exc).__name__}: {exc})", True)
        # Raised here, outside the except blocks, so httpx's exception (which holds the
        # request and its URL) is not chained onto ours as __context__.
        if failure is not None:
            raise failure
        assert response is not None
        status = response.status_code
        if 200 <= status < 300:
            return
        body = _plain_one_line(response.text, 200)
        transient = status >= 500 or status in (408, 429)
        raise self._error(
            f"HTTP {status}: {body}",
            transient,
            retry_after=_retry_after(response) if status in (429, 503) else None,
        )

    def _error(
        self, message: str, transient: bool, *, retry_after: float | None = None
    ) -> DeliveryError:
        return DeliveryError(
            f"slack webhook ({self.channel}): {message}",
            transient=transient,
            retry_after=retry_after,
            secrets=self._secrets,
        )


# -- email --------------------------------------------------------------------


def _text_headline(i: int, h: Headline) -> list[str]:
    tokens = _tokens(h)
    title = "".join(f"*{t}*" if hot else t for t, hot in highlight_spans(h.title, tokens))
    lines = [f"  {i}. {title} ({h.score:+.2f})"]
    if tokens:
        lines.append("     attended: " + ", ".join(tokens))
    url = safe_url(h.url)
    if url or h.source:
        lines.append("     " + " ".join(p for p in (_plain_one_line(h.source, 80), url) if p))
    return lines


def _text_body(n: Notification) -> str:
    lines = [_summary(n), ""]
    for a in n.alerts:
        lines.append(f"{_alert_status(a)} {a.key}")
        lines.append(f"Window: {_window(a)}")
        if a.state == "resolved":
            lines.append(f"Back to baseline: {_figures(a)}")
        else:
            lines.append(f"Score: {_figures(a)}")
            headlines = top_headlines(a)
            if headlines:
                lines.append("Top headlines (attended words in *stars*):")
                for i, h in enumerate(headlines, 1):
                    lines.extend(_text_headline(i, h))
        lines.append("")
    dashboard = safe_url(n.dashboard_url)
    if dashboard:
        lines.append(f"Dashboard: {dashboard}")
    return "\n".join(lines) + "\n"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_headline(h: Headline) -> str:
    tokens = _tokens(h)
    title = "".join(
        f"<mark><strong>{_e(t)}</strong></mark>" if hot else _e(t)
        for t, hot in highlight_spans(h.title, tokens)
    )
    parts = [f'{title} <span style="color:#666">({h.score:+.2f})</span>']
    url = safe_url(h.url)
    label = _e(_plain_one_line(h.source, 80) or "source")
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
        f"<h2>{_e(_summary(n))}</h2>",
    ]
    for a in n.alerts:
        colour = "#2e7d32" if a.state == "resolved" else "#c62828"
        out.append('<div style="margin-bottom:1em">')
        out.append(
            f'<p><strong style="color:{colour}">{_e(_alert_status(a))}</strong> '
            f"<code>{_e(a.key)}</code><br>"
            f"Window: {_e(_window(a))}<br>"
        )
        if a.state == "resolved":
            out.append(f"Back to baseline: {_e(_figures(a))}</p>")
        else:
            out.append(f"Score: {_e(_figures(a))}</p>")
            headlines = top_headlines(a)
            if headlines:
                out.append("<p>Top headlines (attended words highlighted):</p><ol>")
                out.extend(_html_headline(h) for h in headlines)
                out.append("</ol>")
        out.append("</div>")
    dashboard = safe_url(n.dashboard_url)
    if dashboard:
        out.append(f'<p><a href="{_e(dashboard)}">Open in dashboard</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def email_message(n: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A text + HTML alternative message with the Slack message's content. ``Date`` is left to
    the sender, so this stays a pure function of the notification."""
    msg = EmailMessage()
    msg["Subject"] = _plain_one_line(f"[finsent] {_summary(n)}")
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


def _classify_smtp(exc: BaseException) -> tuple[bool, str]:
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
        _REDACTOR.register(*self._secrets)

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
            transient, detail = _classify_smtp(exc)
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


# -- delivery -----------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.transient


def deliver(
    n: Notification,
    notifier: Notifier,
    store: Store,
    *,
    now: Callable[[], datetime],
    max_attempts: int = 6,
    max_wait_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Send ``n`` through ``notifier`` unless the delivery log says it went already.

    Transient failures are retried with exponential backoff (1, 2, 4 … s, each wait capped at
    ``max_wait_s``; a longer wait the endpoint asks for via Retry-After is honoured, or, past
    ``max_wait_s``, ends the tries). The outcome is logged, then recorded under (id, channel);
    a "failed" row does not block a later ``deliver`` of the same notification.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    channel = notifier.channel
    logged = store.delivery(n.id, channel)
    if logged is not None and logged["status"] == "delivered":
        log.info(
            "notification %s (%s %s) already delivered to %s; not re-sending",
            n.id,
            n.kind,
            n.group_key,
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
            last_error = scrub(str(failure), _REDACTOR.secrets)
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

    def asked_too_long(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return asked is not None and asked > max_wait_s

    def before_sleep(state: RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        log.info("notification %s to %s: retrying in %.1f s", n.id, channel, seconds)

    retrying = Retrying(
        stop=stop_any(stop_after_attempt(max_attempts), asked_too_long),
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
    store.record_delivery(
        {
            "notification_id": n.id,
            "channel": channel,
            "status": status,
            "attempts": attempts,
            "last_error": last_error,
            "group_key": n.group_key,
            "kind": n.kind,
            "at": now(),
        }
    )
    return DeliveryResult(status=status, attempts=attempts, error=last_error)
