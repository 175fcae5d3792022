"""Slack: a notification as a Block Kit message, posted to an incoming webhook over httpx.

The webhook URL is the credential, held as a ``SecretStr``: it is registered with the redactor
and never put in an error or log. Errors are raised outside the ``except`` blocks, so httpx's
exception, which holds the request and its URL, is never chained onto ours.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from finsent.alerts.notify.content import (
    STATUS_LABELS,
    alert_status,
    attended_tokens,
    figures_text,
    group_severity,
    highlight_spans,
    one_line,
    summary,
    top_headlines,
    window_text,
)
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.alerts.notify.redact import REDACTOR
from finsent.core.records import Alert, Headline
from finsent.core.safety import encoded_web_link

MAX_SLACK_ALERTS = 12  # Block Kit allows 50 blocks per message; each alert takes up to three
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def slack_escape(text: str) -> str:
    """Slack's three control characters; everything from a feed goes through this."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    url = encoded_web_link(url)
    return f"<{slack_escape(url)}|{slack_escape(label)}>" if url else slack_escape(label)


def _slack_headline(i: int, h: Headline) -> str:
    tokens = attended_tokens(h)
    title = "".join(
        f"*{slack_escape(text)}*" if hot else slack_escape(text)
        for text, hot in highlight_spans(h.title, tokens)
    )
    line = f"{i}. {title} ({h.score:+.2f})"
    if h.url or h.source:
        line += " — " + _slack_link(h.url, one_line(h.source, 80) or "source")
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
        f"{emoji} *{alert_status(a)}* {slack_escape(a.key)}",
        f"*Window:* {window_text(a)}",
    ]
    if a.state == "resolved":
        lines.append(f"*Back to baseline:* {figures_text(a)}")
    else:
        lines.append(f"*Score:* {figures_text(a)}")
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
    header = f"{STATUS_LABELS[n.kind]} ({group_severity(n)}): {n.group_key}"
    if len(n.alerts) > 1:
        header += f" — {len(n.alerts)} series"
    blocks: list[dict[str, Any]] = [
        # plain_text is shown literally, so it is not escaped; Slack caps a header at 150.
        {"type": "header", "text": {"type": "plain_text", "text": one_line(header, 150)}}
    ]
    shown = n.alerts[:MAX_SLACK_ALERTS]
    for i, a in enumerate(shown):
        if i:
            blocks.append({"type": "divider"})
        blocks.extend(_slack_alert_blocks(a))
    if len(n.alerts) > len(shown):
        more = f"…and {len(n.alerts) - len(shown)} more series: see the dashboard."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    dashboard = encoded_web_link(n.dashboard_url)
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
    fallback = [slack_escape(summary(n))]
    for a in n.alerts[:5]:
        fallback.append(
            slack_escape(f"{alert_status(a)} {a.key}, {window_text(a)}: {figures_text(a)}")
        )
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
        loopback = parts.hostname in LOOPBACK_HOSTS
        # Plain http would send the credential in clear; only a local relay or test may use it.
        if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            raise ValueError(f"{channel}: the Slack webhook URL must be https (URL not shown)")
        self.channel = channel
        self.timeout_s = timeout_s
        self._url = webhook_url
        self._secrets = (url,)  # its path and tokens are scrubbed as spellings of it
        REDACTOR.register(*self._secrets)

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
        body = one_line(response.text, 200)
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
