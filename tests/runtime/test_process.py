"""Logging set-up: every record of every logger is scrubbed of the secrets the settings read,
so httpx's request lines never show an API key sent as a query parameter."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from finsent.core.settings import Settings
from finsent.ingest.api_source import fetch_api
from finsent.ingest.fetch import Fetcher
from finsent.ingest.sources import parse_sources
from finsent.runtime.process import setup_logging

KEY = "live-key-5c4b3a2918"
WEBHOOK = "https://hooks.slack.test/services/T000/B000/secretwebhooktoken1"


def test_httpx_request_lines_never_show_an_api_key(caplog: pytest.LogCaptureFixture) -> None:
    setup_logging("INFO")
    [source] = parse_sources(
        "- name: keyed\n  url: https://api.example.test/news\n  kind: api\n"
        "  api: {items_path: items, fields: {title: t}, api_key_env: NEWS_KEY,"
        " api_key_param: apiKey}\n",
        environ={"NEWS_KEY": KEY},
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"items": []}))
    with caplog.at_level(logging.INFO), Fetcher(transport=transport, allow_private=True) as f:
        stories, errors = fetch_api(source, f, environ={"NEWS_KEY": KEY})
    assert stories == [] and errors == []
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("apiKey=***" in line for line in lines)
    assert KEY not in caplog.text


def test_the_settings_secrets_are_scrubbed_from_any_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup_logging("INFO")
    Settings(slack_webhook_url=SecretStr(WEBHOOK), smtp_password=SecretStr("smtp-pass-77"))
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("posting to %s", WEBHOOK)
        logging.getLogger("smtplib.debug").warning("login smtp-pass-77 refused")
        try:
            raise ValueError(f"bad hook {WEBHOOK}")
        except ValueError:
            logging.getLogger("x").exception("failed")
    assert "secretwebhooktoken1" not in caplog.text and "smtp-pass-77" not in caplog.text
    assert "posting to ***" in caplog.text


# A child process: freezing the collector is process-wide, and the test process is shared.
_SETTLE_CHILD = """
import gc, weakref
from finsent.runtime.process import YOUNG_COLLECTION_EVERY, settle_collector

settle_collector()
assert gc.get_freeze_count() > 1_000, gc.get_freeze_count()  # what start-up loaded
assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY


class Node:
    pass


a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the freeze: refcounting alone never frees it
probe = weakref.ref(a)
del a, b
keep = [[] for _ in range(3 * YOUNG_COLLECTION_EVERY)]  # allocations, no explicit collect
assert probe() is None, "the collector no longer frees new cycles"
print("ok")
"""


def test_a_settled_collector_leaves_start_up_objects_alone_and_still_frees_new_cycles() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SETTLE_CHILD], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
