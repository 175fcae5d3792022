"""Links and cells from feeds made safe to put in front of people.

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
"""

from __future__ import annotations

from urllib.parse import SplitResult, quote, urlsplit

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
