"""Feed bodies → `RawStory`s: RSS 2.0, Atom, RDF (via feedparser) and Google News sitemaps.

Every body first goes through defusedxml with entity declarations and external references
forbidden, so billion-laughs and XXE payloads are rejected at the declaration, before anything
is expanded. The text feedparser will read (decoded by feedparser's own rules, so EBCDIC or
UTF-7 cannot hide a declaration from an ASCII search) must hold no entity declaration and no
DTD internal subset, and no element with more attributes than a feed needs. Only then does
feedparser see the bytes. A bad entry costs that entry, not the feed; a feed that yields
nothing usable is one `IngestError`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
import feedparser
from defusedxml import DefusedXmlException
from feedparser.encodings import convert_to_utf8

from finsent.ingest.raw import EXCERPT_BYTES, IngestError, RawStory
from finsent.ingest.tickers import MAX_STATED_TICKERS

log = logging.getLogger(__name__)

_ENTITY_DECL = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_DTD_SUBSET = re.compile(rb"<!\s*DOCTYPE[^>\[]*\[", re.IGNORECASE)
_TAG = re.compile(rb"<[^<>]*>")
# feedparser's attribute handling is quadratic in attributes per element; a feed needs few.
MAX_ATTRIBUTES = 256
_TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
_RSS_ITEM = ("item",)
_ATOM_ENTRY = ("entry",)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _excerpt(text: str) -> bytes:
    return text.encode("utf-8", "replace")[:EXCERPT_BYTES]


def clean_tickers(values: Any) -> tuple[str, ...]:
    """Plausible ticker symbols from a list or a comma/space string, deduplicated in order.

    Exchange prefixes ("NASDAQ:AAPL") and "$" are dropped; anything that cannot be a ticker is
    skipped rather than failing the story.
    """
    if values is None:
        return ()
    parts = values if isinstance(values, list | tuple) else re.split(r"[,;\s]+", str(values))
    out: dict[str, None] = {}
    for part in parts:
        symbol = str(part).strip().rsplit(":", 1)[-1].lstrip("$").upper()
        if symbol and _TICKER.match(symbol):
            out[symbol] = None
            if len(out) >= MAX_STATED_TICKERS:
                break
    return tuple(out)


def _as_feedparser_reads(body: bytes, headers: dict[str, str]) -> bytes:
    """The body as UTF-8, decoded exactly as feedparser will decode it (same function, same
    headers), so the checks below see what the lenient parser will see."""
    return bytes(convert_to_utf8(dict(headers), body, {}))


def _hostile_text(text: bytes) -> str | None:
    """What makes the text feedparser reads unsafe to hand it, or None."""
    if _ENTITY_DECL.search(text):
        return "XML bomb rejected: entity declaration"
    if _DTD_SUBSET.search(text):
        return "XML bomb rejected: DTD with an internal subset"
    for tag in _TAG.finditer(text):
        if tag.group().count(b"=") > MAX_ATTRIBUTES:
            return f"malformed XML: an element with more than {MAX_ATTRIBUTES} attributes"
    return None


def check_xml_safety(
    source_name: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[Element | None, IngestError | None]:
    """Parse with defusedxml; return (root or None if not well-formed, bomb error or None).

    Expat reports an entity declaration as soon as it reads it, so a bomb is refused before
    any expansion and before the rest of the document is read. What expat cannot read (a
    malformed document, an encoding it lacks) is checked in the text feedparser would read
    (``headers``: the response headers it will get), whatever its encoding.
    """
    root: Element | None = None
    try:
        root = safe_et.fromstring(
            body, forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        return None, IngestError(source_name, f"XML bomb rejected: {exc}", body)
    except (ParseError, ValueError, LookupError) as exc:  # LookupError: an unknown encoding
        log.debug("%s: not well-formed XML (%s); trying the lenient parser", source_name, exc)
    try:
        text = _as_feedparser_reads(body, headers or {})
    except Exception as exc:  # an encoding feedparser itself could not read: refuse it
        return None, IngestError(source_name, f"malformed XML: unreadable encoding: {exc}", body)
    problem = _hostile_text(text)
    if problem is not None:
        return None, IngestError(source_name, problem, body)
    return root, None


def parse_feed(
    source_name: str,
    body: bytes,
    content_type: str | None = None,
    *,
    base_url: str | None = None,
    warnings: list[str] | None = None,
) -> tuple[list[RawStory], list[IngestError]]:
    """Parse one feed body. Never raises for bad input: what cannot be read is an IngestError.

    `warnings` (optional) receives non-fatal notes, e.g. a feed that parsed despite a bad
    encoding; they are logged either way.
    """
    if not body.strip():
        return [], [IngestError(source_name, "malformed XML: empty document")]
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    if base_url:
        headers["content-location"] = base_url  # resolves relative links
    root, bomb = check_xml_safety(source_name, body, headers)
    if bomb is not None:
        return [], [bomb]
    if root is not None and _local(root.tag) == "urlset":
        return parse_news_sitemap(source_name, root)

    try:
        # bytes, never str: feedparser treats a str as a URL or path and would fetch it.
        parsed = feedparser.parse(bytes(body), response_headers=headers)
    except Exception as exc:  # feedparser bugs on hostile input must not kill the poller
        return [], [IngestError(source_name, f"malformed XML: {type(exc).__name__}: {exc}", body)]

    entries = parsed.get("entries") or []
    bozo = parsed.get("bozo")
    problem = parsed.get("bozo_exception")
    if bozo and not entries:
        return [], [IngestError(source_name, f"malformed XML: {problem}", body)]
    if not bozo and not entries and not parsed.get("version"):
        what = f"<{_local(root.tag)}>" if root is not None else "unknown"
        return [], [
            IngestError(source_name, f"not a feed: root element {what} is not RSS/Atom/RDF", body)
        ]

    symbols = _symbol_categories(root, len(entries))
    stories: list[RawStory] = []
    errors: list[IngestError] = []
    for index, entry in enumerate(entries):
        story = _entry_to_story(source_name, entry, symbols[index] if symbols else ())
        if isinstance(story, IngestError):
            errors.append(story)
        else:
            stories.append(story)
    if bozo:
        if not stories:  # only fragments of a broken document: nothing usable
            return [], [IngestError(source_name, f"malformed XML: {problem}", body)]
        note = f"{source_name}: feed parsed with {len(stories)} stories despite: {problem}"
        log.warning(note)
        if warnings is not None:
            warnings.append(note)
    return stories, errors


def _entry_to_story(
    source_name: str, entry: dict[str, Any], extra_tickers: tuple[str, ...]
) -> RawStory | IngestError:
    raw = _excerpt(json.dumps(entry, default=str, ensure_ascii=False))
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        return IngestError(source_name, "missing field: title", raw)
    link = entry.get("link") or ""
    if not link:
        for candidate in entry.get("links") or []:
            if candidate.get("href"):
                link = candidate["href"]
                break
    if not link and entry.get("guidislink"):
        link = entry.get("id") or ""
    summary = entry.get("summary") or entry.get("description") or ""
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value") or ""
    published = entry.get("published") or entry.get("updated") or None
    # RSS <category domain=".../symbol"> arrives as a tag's scheme; type="symbol" only via XML.
    scheme_symbols = [
        tag.get("term")
        for tag in entry.get("tags") or []
        if tag.get("term") and "symbol" in str(tag.get("scheme") or "").lower()
    ]
    tickers = clean_tickers([*extra_tickers, *scheme_symbols])
    return RawStory(
        source=source_name,
        title=title,
        url=str(link).strip(),
        summary=str(summary),
        published=str(published) if published else None,
        tickers=tickers,
        raw=raw,
    )


def _symbol_categories(root: Element | None, expected: int) -> list[tuple[str, ...]]:
    """Per item, in document order, the text of `<category type="symbol">` children.

    feedparser drops the `type` attribute, so these come from the defused tree. Items are
    matched to feedparser entries by position, only when the counts agree.
    """
    if root is None:
        return []
    items = [el for el in root.iter() if _local(el.tag) in _RSS_ITEM + _ATOM_ENTRY]
    if len(items) != expected:
        return []
    result: list[tuple[str, ...]] = []
    for item in items:
        found = [
            (child.text or "").strip()
            for child in item
            if _local(child.tag) == "category"
            and (child.get("type") or "").lower() == "symbol"
            and (child.text or "").strip()
        ]
        result.append(tuple(found))
    return result


def parse_news_sitemap(source_name: str, root: Element) -> tuple[list[RawStory], list[IngestError]]:
    """A Google News sitemap (`urlset` of `url` with `news:news`): loc, title, date, tickers."""
    stories: list[RawStory] = []
    errors: list[IngestError] = []
    for url_el in root:
        if _local(url_el.tag) != "url":
            continue
        raw = safe_et.tostring(url_el, encoding="utf-8")[:EXCERPT_BYTES]
        fields: dict[str, str] = {}
        for el in url_el.iter():
            name = _local(el.tag)
            if name in ("loc", "title", "publication_date", "stock_tickers", "keywords"):
                fields.setdefault(name, (el.text or "").strip())
        title = fields.get("title", "")
        if not title:
            errors.append(IngestError(source_name, "missing field: title", raw))
            continue
        stories.append(
            RawStory(
                source=source_name,
                title=title,
                url=fields.get("loc", ""),
                summary="",
                published=fields.get("publication_date") or None,
                tickers=clean_tickers(fields.get("stock_tickers")),
                raw=raw,
            )
        )
    return stories, errors
