"""Prometheus metrics: one registry per process, served over HTTP by each stage.

Rates (items/s) come from the counters, as Prometheus expects: ``rate(finsent_items_total[1m])``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
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


def serve(settings: Settings, stage: str) -> int | None:
    """Serve this process's metrics; return the port, or None when metrics are off."""
    port = settings.metrics_port
    if port is None:
        return None
    if port < 0:
        # The stage's well-known port, so a scrape config can list them; else any free one.
        port = stage_spec(stage).port if stage in STAGE_NAMES else 0
    try:
        server, _thread = start_http_server(port, addr=settings.metrics_host, registry=REGISTRY)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        # A second process of the same stage on this host: take any port and say which.
        server, _thread = start_http_server(0, addr=settings.metrics_host, registry=REGISTRY)
    bound = server.server_address[1]
    log.info("%s metrics on http://%s:%d/metrics", stage, settings.metrics_host, bound)
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
