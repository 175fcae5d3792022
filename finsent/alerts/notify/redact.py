"""Secrets kept out of every error message, log record and delivery-log row.

The process keeps one list of secrets, ``core.safety.SECRETS``: the settings register the
secrets they read, and each notifier ``register``s its own as it is made (a Slack webhook's URL
is its credential, and an SMTP password is one too). ``scrub`` replaces them in a string, and
``REDACTOR``, a logging filter over the same list, scrubs the records of the notify modules'
loggers and of the HTTP client's (which logs each request URL) even where the process's
logging was not set up by ``runtime.process.setup_logging``, such as a library user's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import SecretStr

from finsent.core.safety import REDACTED, SECRETS, SecretRegistry

__all__ = ["REDACTED", "REDACTOR", "Redactor", "redacting_logger", "scrub"]

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


def scrub(text: str, secrets: Iterable[str | SecretStr | None] = ()) -> str:
    """``text`` with every registered secret, and ``secrets`` too, replaced in each of their
    spellings (percent-encoded and -decoded, a URL's path and long path tokens)."""
    extra = SecretRegistry()
    extra.register(*(s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets))
    return extra.scrub(SECRETS.scrub(text))


class Redactor(logging.Filter):
    """Scrubs a registry's secrets (the process's, by default) from log records."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self.registry = registry

    def register(self, *secrets: str | None) -> None:
        self.registry.register(*secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        self.registry.redact(record)
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
