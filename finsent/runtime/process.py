"""Turns SIGTERM and SIGINT into a stop event, so stages finish their batch and exit cleanly."""

from __future__ import annotations

import logging
import signal
import threading

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


def setup_logging(level: str = "INFO", kafka_level: str = "WARNING") -> None:
    """Log at ``level``; kafka-python's loggers at ``kafka_level`` (settings.kafka_log_level):
    it is chatty at INFO about every connection."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(kafka_level.upper())
