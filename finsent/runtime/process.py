"""Turns SIGTERM and SIGINT into a stop event, so stages finish their batch and exit cleanly."""

from __future__ import annotations

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
