"""Turns SIGTERM and SIGINT into a stop event, so stages finish their batch and exit cleanly."""

from __future__ import annotations

import logging
import os
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


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python is chatty at INFO about every connection.
    logging.getLogger("kafka").setLevel(os.environ.get("FINSENT_KAFKA_LOG_LEVEL", "WARNING"))
