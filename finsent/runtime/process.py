"""Process-wide set-up of a long-running stage: SIGTERM and SIGINT become a stop event (so
stages finish their batch and exit cleanly), secrets are redacted from logs, the garbage
collector is kept to the stage's working set, and freed heap memory goes back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import cache
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


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """Hands the heap's free pages back to the system, at most once every ``every_s``.

    A stage's batches allocate and free in bursts, and glibc keeps what a burst freed in the
    middle of its heap: RSS then creeps up to the largest burst's high-water mark for many
    minutes (the soak's aggregator and scorer, by 5-10 %), although the live objects stay the
    same. ``malloc_trim`` returns those free pages (6 ms measured on a fragmented 200 MB heap)."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.last = clock()

    def maybe_trim(self) -> bool:
        """Trim if ``every_s`` has passed since the last time; whether it did."""
        now = self.clock()
        if now - self.last < self.every_s:
            return False
        self.last = now
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        return True
