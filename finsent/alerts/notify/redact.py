"""Secrets kept out of every error message, log record and delivery-log row.

A Slack webhook's URL is its credential (its path holds the token), and an SMTP password is
one too. Notifiers ``register`` theirs with the process-wide ``REDACTOR``; ``scrub`` replaces
every registered secret in a string, and the redactor, as a logging filter, does the same to
the records of the notify modules' loggers and of the HTTP client's, which logs each request
URL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

REDACTED = "***"
# httpx and httpcore log request URLs; a logger's filters see only its own records, not its
# children's, so each one is named.
HTTP_CLIENT_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


def scrub(text: str, secrets: Iterable[str | SecretStr | None]) -> str:
    """``text`` with every secret, and its percent-encoded and -decoded forms, replaced."""
    variants: set[str] = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            variants |= {value, quote(value, safe=""), quote(value, safe="/:"), unquote(value)}
    # Longest first, so a URL goes whole before its own path would leave the host behind.
    for variant in sorted(variants, key=len, reverse=True):
        if variant:
            text = text.replace(variant, REDACTED)
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """A webhook URL's credential parts: the URL, its path and query, and its long path tokens."""
    parts = urlsplit(url)
    tokens = [seg for seg in parts.path.split("/") if len(seg) >= 12]
    return tuple(
        s for s in (url, parts.path if len(parts.path) > 1 else "", parts.query, *tokens) if s
    )


class Redactor(logging.Filter):
    """Scrubs registered secrets from log records."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.secrets: tuple[str, ...] = ()  # replaced whole, so readers need no lock

    def register(self, *secrets: str) -> None:
        with self._lock:
            self.secrets = tuple(sorted({*self.secrets, *(s for s in secrets if s)}))

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        clean = scrub(message, secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), secrets)
        return True


REDACTOR = Redactor()
for _name in HTTP_CLIENT_LOGGERS:
    logging.getLogger(_name).addFilter(REDACTOR)


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the redactor on it: for every module that logs around a send."""
    logger = logging.getLogger(name)
    if REDACTOR not in logger.filters:
        logger.addFilter(REDACTOR)
    return logger
