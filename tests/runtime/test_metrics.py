"""The metrics server: Prometheus text on /metrics and the stage's health on /healthz."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from finsent.core.settings import Settings
from finsent.runtime import metrics
from finsent.runtime.metrics import HEALTH_PATH, Heartbeats, make_app, start_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[tuple[str, Heartbeats, Counter]]:
    """A scorer's server on a free loopback port, over a registry and heartbeats of its own."""
    registry = CollectorRegistry()
    items = Counter("finsent_items", "Records consumed.", ["stage"], registry=registry)
    heartbeats = Heartbeats(clock)
    app = make_app("scorer", registry, heartbeats, stale_after_s=30)
    server = start_server("127.0.0.1", 0, app)
    yield f"http://127.0.0.1:{server.server_address[1]}", heartbeats, items
    server.shutdown()
    server.server_close()


def test_health_is_starting_until_the_first_beat(served: Any) -> None:
    base, _heartbeats, _items = served

    status, content_type, body = get(base + HEALTH_PATH)

    assert (status, content_type) == (503, "application/json")
    assert json.loads(body) == {
        "stage": "scorer",
        "status": "starting",
        "seconds_since_beat": None,
        "stale_after_seconds": 30,
    }


def test_health_is_ok_while_the_loop_beats_and_stalled_once_it_stops(
    served: Any, clock: FakeClock
) -> None:
    base, heartbeats, _items = served
    heartbeats.beat("scorer")
    clock.now += 29.5

    status, _, body = get(base + HEALTH_PATH)
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    assert json.loads(body)["seconds_since_beat"] == 29.5

    clock.now += 1  # 30.5 s since the last beat: past stale_after_s
    status, _, body = get(base + HEALTH_PATH)
    assert status == 503
    assert json.loads(body)["status"] == "stalled"

    heartbeats.beat("scorer")  # the loop goes round again
    assert get(base + HEALTH_PATH)[0] == 200


def test_another_stages_beat_does_not_make_this_one_healthy(served: Any) -> None:
    base, heartbeats, _items = served
    heartbeats.beat("router")

    assert get(base + HEALTH_PATH)[0] == 503


def test_metrics_are_served_beside_the_health(served: Any) -> None:
    base, _heartbeats, items = served
    items.labels("scorer").inc(3)

    status, content_type, body = get(base + "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'finsent_items_total{stage="scorer"} 3.0' in body


def test_serve_binds_the_configured_host_and_answers_health_for_its_stage() -> None:
    """Through ``serve``, as a stage starts it: the process-wide registry and heartbeats."""
    port = metrics.serve(Settings(metrics_host="127.0.0.1", metrics_port=0), "alerter")
    assert port is not None
    base = f"http://127.0.0.1:{port}"

    metrics.beat("alerter")
    status, _, body = get(base + HEALTH_PATH)

    assert status == 200
    assert json.loads(body)["stage"] == "alerter"
    assert get(base + "/metrics")[0] == 200


def test_serve_is_off_without_a_port() -> None:
    assert metrics.serve(Settings(metrics_port=None), "scorer") is None
