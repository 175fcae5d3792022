"""Links and cells from feeds made safe to put in front of people, and secrets kept out of
logs.

Headline URLs come from outside, so a link is only ever an absolute http(s) URL. There are two
contracts, one per function, because their callers need different things:

- ``strict_web_link`` refuses: it gives back the URL unchanged when it is already a plain
  http(s) link, and ``None`` for anything odd. The dashboard uses it: it shows the link as it
  came or not at all.
- ``encoded_web_link`` repairs: it percent-encodes the characters that could break out of a
  link (spaces, quotes, angle brackets, control characters), and gives ``""`` for what it
  cannot repair (another scheme, no host, an overlong URL). Slack and email messages use it,
  where an empty link means "show the label without a link".

``spreadsheet_cell`` disarms text a spreadsheet would run as a formula; every CSV we write
(the dashboard's exports, the backtest report) passes its cells through it.

``SECRETS`` is the process's one list of secrets to keep out of log lines: every secret the
settings read (``core.settings`` registers them: Slack webhooks, the SMTP password, API keys)
is on it, and the logging set-up (``runtime.process.setup_logging``) scrubs every record with
it, whichever logger made the record (httpx logs each request URL, query keys included).
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import SplitResult, quote, quote_plus, unquote, urlsplit

MAX_URL_CHARS = 2000  # longer feed links are dropped rather than cut into broken ones
_WEB_SCHEMES = ("http", "https")
_UNSAFE_IN_LINK = frozenset("\x7f \"'<>`")
# What ``encoded_web_link`` leaves alone: the URL's own syntax and existing %-escapes.
_URL_SYNTAX = ":/?#[]@!$&'()*+,;=%~"
# What makes Excel, LibreOffice and Sheets read a cell as a formula (OWASP's CSV injection list).
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _web_parts(url: str) -> SplitResult | None:
    """The URL's parts when it is an absolute http(s) URL with a host, else None."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    if parts.scheme.lower() not in _WEB_SCHEMES or not parts.netloc:
        return None
    return parts


def strict_web_link(url: object) -> str | None:
    """``url`` unchanged if it is a plain http(s) link, else None: no ``javascript:``,
    ``data:``, relative paths, and nothing with spaces, quotes, angle brackets, backticks or
    control characters in it. Leading and trailing whitespace is dropped."""
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text or any(ch < " " or ch in _UNSAFE_IN_LINK for ch in text):
        return None
    return text if _web_parts(text) is not None else None


def encoded_web_link(url: str) -> str:
    """``url`` with every character that could end or break a link percent-encoded, or ""
    unless it is an absolute http(s) URL of at most ``MAX_URL_CHARS``."""
    text = url.strip()
    if len(text) > MAX_URL_CHARS or _web_parts(text) is None:
        return ""
    return quote(text, safe=_URL_SYNTAX)


def spreadsheet_cell(value: object) -> object:
    """``value`` unchanged, unless it is text a spreadsheet would run as a formula (starting
    with = + - @, a tab or a carriage return): then it is prefixed with a quote, which shows
    the text as typed. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_TRIGGERS):
        return "'" + value
    return value


REDACTED = "***"


def secret_variants(secret: str) -> set[str]:
    """The spellings a secret may take in a log line: as is, percent-encoded (as httpx puts
    query values), and for a URL (a webhook) its path and long path segments too."""
    variants = {secret, quote(secret, safe=""), quote(secret, safe="/:"), quote_plus(secret)}
    variants.add(unquote(secret))
    parts = _web_parts(secret)
    if parts is not None:
        if len(parts.path) > 1:
            variants.add(parts.path)
        if parts.query:
            variants.add(parts.query)
        variants |= {segment for segment in parts.path.split("/") if len(segment) >= 12}
    return {variant for variant in variants if variant}


class SecretRegistry:
    """The secrets this process holds, and a scrubber of text and log records for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._variants: tuple[str, ...] = ()  # longest first; replaced whole, read lock-free

    def register(self, *secrets: str | None) -> None:
        new = {variant for secret in secrets if secret for variant in secret_variants(secret)}
        with self._lock:
            if new <= set(self._variants):
                return
            merged = new | set(self._variants)
            self._variants = tuple(sorted(merged, key=lambda v: (-len(v), v)))

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret (in each of its spellings) replaced."""
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, REDACTED)
        return text

    def redact(self, record: logging.LogRecord) -> None:
        """Scrub a log record's message and its exception text in place."""
        if not self._variants:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as it would
            return
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrub(formatted)


SECRETS = SecretRegistry()
