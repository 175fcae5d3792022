"""JSON news APIs → `RawStory`s, following the source's `api` mapping and pagination cursor.

The key is read from the environment variable the source names, at call time (through
``finsent.core.settings.secret_from_env``, which also tells the log redactor), and sent as a
query parameter or a header; it is never stored, logged or put in an error reason. Every page
stays on the configured origin: a redirect or a next-page URL to another one is refused, so the
key only ever goes where the sources file sends it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from finsent.core.settings import secret_from_env
from finsent.ingest.fetch import Fetcher, same_origin
from finsent.ingest.raw import EXCERPT_BYTES, IngestError, RawStory
from finsent.ingest.sources import ApiConfig, Source
from finsent.ingest.tickers import MAX_STATED_TICKERS

log = logging.getLogger(__name__)

_MISSING = object()


def get_path(data: Any, path: str) -> Any:
    """Follow a dotted path ("data.items", "results.0.title") through dicts and lists."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _published(value: Any) -> str | datetime | None:
    if value is _MISSING or value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        # Epoch seconds, or milliseconds when implausibly large for seconds.
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return str(value)
    return str(value)


def _tickers(value: Any) -> tuple[str, ...]:
    if value is _MISSING or value is None:
        return ()
    parts = value if isinstance(value, list) else str(value).split(",")
    out: dict[str, None] = {}
    for part in parts:
        if isinstance(part, Mapping):  # e.g. [{"symbol": "AAPL"}]
            part = part.get("symbol") or part.get("ticker") or ""
        symbol = str(part).strip()[:20]  # no ticker is longer; a hostile one is not copied
        if symbol:
            out[symbol] = None
            if len(out) >= MAX_STATED_TICKERS:
                break
    return tuple(out)


def item_to_story(source_name: str, config: ApiConfig, item: Any) -> RawStory | IngestError:
    """One JSON item → a RawStory, or an IngestError naming what is missing."""
    raw = json.dumps(item, default=str, ensure_ascii=False).encode("utf-8", "replace")
    raw = raw[:EXCERPT_BYTES]
    if not isinstance(item, Mapping):
        return IngestError(source_name, f"item is not an object: {type(item).__name__}", raw)
    fields = config.fields
    title = _text(get_path(item, fields.title))
    if not title.strip():
        return IngestError(source_name, "missing field: title", raw)
    return RawStory(
        source=source_name,
        title=title,
        url=_text(get_path(item, fields.url)) if fields.url else "",
        summary=_text(get_path(item, fields.summary)) if fields.summary else "",
        published=_published(get_path(item, fields.published)) if fields.published else None,
        tickers=_tickers(get_path(item, fields.tickers)) if fields.tickers else (),
        raw=raw,
    )


def fetch_api(
    source: Source, fetcher: Fetcher, *, environ: Mapping[str, str] | None = None
) -> tuple[list[RawStory], list[IngestError]]:
    """Fetch every page (up to the cursor's max_pages) of an API source. Never raises for bad
    input: a failed page ends pagination with an IngestError, keeping earlier pages' stories."""
    config = source.api
    if config is None:
        return [], [IngestError(source.name, "source has no api block")]
    params: dict[str, Any] = dict(config.params)
    headers: dict[str, str] = dict(config.headers)
    headers.setdefault("Accept", "application/json")
    if config.api_key_env:
        secret = secret_from_env(config.api_key_env, environ)
        if secret is None:
            return [], [
                IngestError(
                    source.name,
                    f"missing API key: environment variable {config.api_key_env} is not set",
                )
            ]
        key = secret.get_secret_value()
        if config.api_key_param:
            params[config.api_key_param] = key
        elif config.api_key_header:
            headers[config.api_key_header] = key

    cursor = config.cursor
    max_pages = cursor.max_pages if cursor else 1
    url = source.url
    seen_tokens: set[str] = set()
    stories: list[RawStory] = []
    errors: list[IngestError] = []
    for page in range(1, max_pages + 1):
        try:
            # Not conditional: the state is keyed by URL and params may carry the key.
            result = fetcher.get(
                url,
                source=source.name,
                params=params,
                headers=headers,
                conditional=False,
                allow_private=source.allow_private_network,
                keep_origin=True,
            )
        except IngestError as exc:
            if page > 1:
                exc = IngestError(source.name, f"page {page}: {exc.reason}", exc.raw)
            errors.append(exc)
            break
        try:
            document = json.loads(result.body)
        except (ValueError, UnicodeDecodeError) as exc:
            errors.append(IngestError(source.name, f"invalid JSON: {exc}", result.body))
            break
        items = get_path(document, config.items_path)
        if items is _MISSING:
            errors.append(
                IngestError(
                    source.name, f"missing field: items_path {config.items_path!r}", result.body
                )
            )
            break
        if not isinstance(items, list):
            errors.append(
                IngestError(
                    source.name,
                    f"items_path {config.items_path!r} is a {type(items).__name__}, not a list",
                    result.body,
                )
            )
            break
        for item in items:
            story = item_to_story(source.name, config, item)
            if isinstance(story, IngestError):
                errors.append(story)
            else:
                stories.append(story)

        if cursor is None:
            break
        token = get_path(document, cursor.response_path)
        if token is _MISSING or token in (None, "", False):
            break
        token = str(token)
        if token in seen_tokens:  # a server repeating its cursor would loop forever
            log.warning("%s: page %d repeats cursor; stopping", source.name, page)
            break
        seen_tokens.add(token)
        if cursor.param:
            params[cursor.param] = token
        else:
            next_url = urljoin(result.url, token)
            if not same_origin(next_url, source.url):
                errors.append(
                    IngestError(source.name, f"page {page}: cursor to another origin refused")
                )
                break
            url = next_url
    return stories, errors
