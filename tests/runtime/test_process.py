"""Logging set-up: every record of every logger is scrubbed of the secrets the settings read,
so httpx's request lines never show an API key sent as a query parameter."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from finsent.core.settings import Settings
from finsent.ingest.api_source import fetch_api
from finsent.ingest.fetch import Fetcher
from finsent.ingest.sources import parse_sources
from finsent.runtime.process import HeapTrimmer, setup_logging

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


def test_the_heap_trimmer_trims_at_most_once_per_interval() -> None:
    now = [100.0]
    trimmer = HeapTrimmer(every_s=30.0, clock=lambda: now[0])
    assert not trimmer.maybe_trim()  # the interval starts when the loop does
    now[0] = 129.9
    assert not trimmer.maybe_trim()
    now[0] = 130.0
    assert trimmer.maybe_trim()
    now[0] = 150.0
    assert not trimmer.maybe_trim()
    now[0] = 160.0
    assert trimmer.maybe_trim()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc",
    reason="glibc on Linux",
)
def test_a_trim_hands_back_the_pages_a_burst_freed_in_the_middle_of_the_heap() -> None:
    """What the soak saw: a burst's freed memory, pinned by the objects that stayed, kept in
    RSS until trimmed."""
    burst = [bytearray(4000) for _ in range(40_000)]  # 160 MB, each above pymalloc's sizes
    kept = burst[::16]  # pins the heap: nothing past the last one can shrink on its own
    del burst
    before = _rss_kib()
    trimmer = HeapTrimmer(every_s=0.0)
    assert trimmer.maybe_trim()
    assert before - _rss_kib() > 100_000  # KiB: most of the 150 MB freed
    assert len(kept) == 2_500
