"""Slack: the Block Kit message, and the webhook over a real loopback HTTP server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from support.notifications import (
    DASHBOARD,
    NOW,
    WEBHOOK_PATH,
    WEBHOOK_TOKEN,
    all_text,
    firing_alert,
    notification,
    slack,
)
from support.notify_loopback import Reply, WebhookServer

from finsent.alerts.notify.delivery import DeliveryResult, deliver
from finsent.alerts.notify.model import DeliveryError
from finsent.alerts.notify.slack import SlackNotifier, slack_escape, slack_payload
from finsent.app.ports import free_port
from finsent.runtime.store import Store

# -- the message ------------------------------------------------------------------------


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


def test_slack_escape_covers_its_three_control_characters() -> None:
    assert slack_escape("<@U1> & <!here>") == "&lt;@U1&gt; &amp; &lt;!here&gt;"


def test_a_long_group_stays_within_block_kit_limits() -> None:
    alerts = tuple(firing_alert(f"ticker:T{i}") for i in range(30))
    blocks = slack_payload(notification(alerts=alerts))["blocks"]
    assert len(blocks) <= 50
    assert "18 more series" in all_text(blocks)
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


# -- the webhook ------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("reply", "transient", "retry_after"),
    [
        (Reply(500, b"rollup_error"), True, None),
        (Reply(503, b"busy", {"Retry-After": "3"}), True, 3.0),
        (Reply(429, b"rate_limited", {"Retry-After": "7"}), True, 7.0),
        (Reply(429, b"rate_limited", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), True, None),
        (Reply(400, b"invalid_payload"), False, None),
        (Reply(404, b"no_service"), False, None),
    ],
)
def test_slack_http_errors_say_whether_a_retry_could_help(
    reply: Reply, transient: bool, retry_after: float | None
) -> None:
    with WebhookServer([reply]) as server, pytest.raises(DeliveryError) as err:
        slack(server).send(notification())
    assert err.value.transient is transient
    assert err.value.retry_after == retry_after
    assert f"HTTP {reply.status}: {reply.body.decode()}" in str(err.value)


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
