"""Process-wide set-up of a long-running stage: SIGTERM and SIGINT become a stop event (so
stages finish their batch and exit cleanly), secrets are redacted from logs, and the garbage
collector is kept to the stage's working set."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import Any

from finsent.core.safety import SECRETS

log = logging.getLogger(__name__)


def install_stop_handlers(stop: threading.Event | None = None) -> threading.Event:
    stop = stop or threading.Event()

    def _handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            return
        log.info(
            "received %s: finishing the current batch, then stopping", signal.Signals(signum).name
        )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
    return stop


def install_redaction() -> None:
    """Scrub every log record of every known secret (``core.safety.SECRETS``) as it is made.

    A record factory, not a filter: a filter sits on one logger or handler and misses records
    that propagate past it, so httpx's request lines (URLs with query keys) would slip by.
    Installing twice is a no-op."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        SECRETS.redact(record)
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def setup_logging(level: str = "INFO", kafka_level: str = "WARNING") -> None:
    """Log at ``level``, with every known secret scrubbed from every record; kafka-python's
    loggers at ``kafka_level`` (settings.kafka_log_level): it is chatty at INFO about every
    connection."""
    install_redaction()
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(kafka_level.upper())


# Container allocations between young collections (CPython's default is 700).
YOUNG_COLLECTION_EVERY = 10_000


def settle_collector() -> None:
    """Keep the cyclic garbage collector to the stage's own working set, once set up.

    A full collection walks every tracked object: the modules, schemas and clients loaded at
    start (about 120,000 objects in the aggregator) as well as the stage's windows. Left to
    CPython's defaults it took a third of the aggregator's time: a batch of a few thousand
    records promotes enough objects to start a full collection every few batches. Freezing
    what exists now moves the start-up objects out of its sight (refcounting still frees
    them), and a larger young generation means fewer, not larger, collections of the rest.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
