"""Prometheus metrics: one registry per process, served over HTTP by each stage, with the
stage's health beside them.

Rates (items/s) come from the counters, as Prometheus expects: ``rate(finsent_items_total[1m])``.

Health: each stage's loop beats (``beat``) once per iteration; ``/healthz`` on the metrics
server answers 200 while the last beat is recent and 503 before the first one or once it is
older than ``STALE_AFTER_S``, with a small JSON body (what a container healthcheck reads).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from socketserver import ThreadingMixIn
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)

from finsent.core.settings import Settings
from finsent.core.stages import STAGE_NAMES
from finsent.core.stages import stage as stage_spec

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ITEMS = Counter("finsent_items", "Records consumed by a stage.", ["stage"], registry=REGISTRY)
OUTPUTS = Counter("finsent_outputs", "Records a stage produced.", ["stage"], registry=REGISTRY)
BATCH_SIZE = Histogram(
    "finsent_batch_size",
    "Records per micro-batch.",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "finsent_batch_seconds",
    "Time to process, produce and commit one micro-batch.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
MODEL_SWAPS = Counter(
    "finsent_model_swaps_total",
    "Newly promoted (or rolled back) models the scorer loaded between batches.",
    ["stage"],
    registry=REGISTRY,
)
MODEL_SECONDS = Histogram(
    "finsent_model_seconds",
    "Time inside the scorer's model per micro-batch (the rest of the batch is overhead).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LAG = Gauge(
    "finsent_consumer_lag",
    "Records behind the end of the partition, as of the last fetch.",
    ["stage", "topic", "partition"],
    registry=REGISTRY,
)
LATE = Counter(
    "finsent_late_items",
    "Points later than the allowed lateness, sent to the late/dead-letter path.",
    ["stage"],
    registry=REGISTRY,
)
RESTATED = Counter(
    "finsent_restatements", "Closed windows restated by late news.", ["stage"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "finsent_dead_letters", "Records routed to news.dlq.", ["stage", "kind"], registry=REGISTRY
)
WINDOW_EMITS = Counter(
    "finsent_window_emits",
    "Windows emitted, by kind: update (open window), final (closed), restatement.",
    ["stage", "kind"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "finsent_duplicates", "Redelivered records counted once.", ["stage"], registry=REGISTRY
)
SINK_RETRIES = Counter(
    "finsent_sink_retries",
    "Batches retried because a sink (Kafka or the store) failed; partitions pause meanwhile.",
    ["stage", "sink"],
    registry=REGISTRY,
)


HEALTH_PATH = "/healthz"
# Longer than any bounded wait inside one loop iteration (a sink's retry backoff tops out at
# 30 s, one acknowledgement at 30 s, a notifier's delivery retries at about a minute), shorter
# than the consumer's max poll interval (300 s), after which the group drops the member anyway.
STALE_AFTER_S = 120.0


@dataclass(frozen=True)
class Health:
    """A stage's health as ``/healthz`` reports it (its JSON body)."""

    stage: str
    status: Literal["ok", "starting", "stalled"]
    seconds_since_beat: float | None  # None: no beat yet
    stale_after_seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Heartbeats:
    """When each stage's loop last went round in this process (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[str, float] = {}

    def beat(self, stage: str) -> None:
        self._last[stage] = self.clock()

    def health(self, stage: str, stale_after_s: float = STALE_AFTER_S) -> Health:
        last = self._last.get(stage)
        if last is None:
            return Health(stage, "starting", None, stale_after_s)
        since = max(self.clock() - last, 0.0)
        status: Literal["ok", "stalled"] = "ok" if since <= stale_after_s else "stalled"
        return Health(stage, status, round(since, 3), stale_after_s)


HEARTBEATS = Heartbeats()


def beat(stage: str) -> None:
    """The stage's loop is alive: called once per iteration (and per wait inside one)."""
    HEARTBEATS.beat(stage)


def make_app(
    stage: str,
    registry: CollectorRegistry = REGISTRY,
    heartbeats: Heartbeats | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> WSGIApplication:
    """The stage's HTTP app: ``/healthz`` from its heartbeat (default: this process's
    ``HEARTBEATS``, as ``beat`` records them), anything else the metrics."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return metrics_app(environ, start_response)
        health = (heartbeats or HEARTBEATS).health(stage, stale_after_s)
        body = json.dumps(asdict(health)).encode()
        status = "200 OK" if health.ok else "503 Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds up the process's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """No line per request: Prometheus and the healthcheck ask every few seconds."""


def start_server(host: str, port: int, app: WSGIApplication) -> WSGIServer:
    """Serve ``app`` on ``host:port`` (0: any free port) from a daemon thread."""
    # IPv4 or IPv6, whichever the host names (as prometheus_client's own server does).
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class: type[_Server] = type("_Server", (_Server,), {"address_family": family})
    server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def serve(settings: Settings, stage: str) -> int | None:
    """Serve this process's metrics and the stage's ``/healthz``; return the port, or None
    when metrics are off."""
    port = settings.metrics_port
    if port is None:
        return None
    if port < 0:
        # The stage's well-known port, so a scrape config can list them; else any free one.
        port = stage_spec(stage).port if stage in STAGE_NAMES else 0
    app = make_app(stage)
    try:
        server = start_server(settings.metrics_host, port, app)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        # A second process of the same stage on this host: take any port and say which.
        server = start_server(settings.metrics_host, 0, app)
    bound: int = server.server_address[1]
    log.info(
        "%s metrics on http://%s:%d/metrics (health: %s)",
        stage,
        settings.metrics_host,
        bound,
        HEALTH_PATH,
    )
    return bound


def record_lag(stage: str, consumer: Any, partitions: Iterable[Any]) -> None:
    """Lag per partition from the consumer's last fetch: no extra broker round trip."""
    for tp in partitions:
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            position = consumer.position(tp, timeout_ms=0)
        except Exception:  # noqa: BLE001 - no position yet: nothing consumed to measure
            continue
        if position is not None:
            LAG.labels(stage, tp.topic, str(tp.partition)).set(max(high - position, 0))
