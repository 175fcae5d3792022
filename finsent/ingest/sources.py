"""The sources file: which feeds and APIs to poll, how often, and how to read an API's JSON.

The file is YAML: a list of sources, or a mapping with a ``sources:`` list. It is validated on
load; every error names the file, the source and the field. API keys never live in the file:
a source names an environment variable (``api_key_env``) and the key is read from the
environment, so a literal ``api_key``/``token``/``secret`` field is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finsent.core.errors import UserError, yaml_problem
from finsent.core.settings import secret_from_env

SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIN_INTERVAL_SECONDS = 10
DEFAULT_INTERVAL_SECONDS = 300
# Field names that look like a literal credential, compared lower-case without "_" and "-".
_SECRET_EXACT = frozenset({"authorization", "bearer", "key", "apikey", "token", "secret"})
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd")


class SourcesError(UserError, ValueError):
    """The sources file is unreadable or invalid; the message says where and why."""


def _looks_secret(name: str) -> bool:
    norm = re.sub(r"[-_\s]", "", str(name)).lower()
    return norm in _SECRET_EXACT or norm.endswith(_SECRET_SUFFIXES)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiFields(_Model):
    """Dotted paths inside one item of the API's JSON."""

    title: str
    url: str | None = None
    summary: str | None = None
    published: str | None = None
    tickers: str | None = None  # the value may be a list or a comma-separated string


class ApiCursor(_Model):
    """Pagination: where the next-page token (or URL) is in a response, and how to send it."""

    response_path: str
    # Query parameter to send the token in; None means the token is the next page's URL.
    param: str | None = None
    max_pages: int = Field(default=5, ge=1, le=100)


class ApiConfig(_Model):
    items_path: str
    fields: ApiFields
    cursor: ApiCursor | None = None
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    api_key_env: str | None = None
    api_key_param: str | None = None
    api_key_header: str | None = None

    @field_validator("items_path")
    @classmethod
    def _non_empty_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a dotted path such as 'articles' or 'data.items'")
        return value.strip()

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _key_placement(self) -> ApiConfig:
        places = [p for p in (self.api_key_param, self.api_key_header) if p]
        if self.api_key_env and len(places) != 1:
            raise ValueError("api_key_env needs exactly one of api_key_param or api_key_header")
        if places and not self.api_key_env:
            raise ValueError("api_key_param/api_key_header need api_key_env (the key's env var)")
        return self


class Source(_Model):
    name: str
    url: str
    kind: Literal["rss", "atom", "api"]
    interval_seconds: int = Field(default=DEFAULT_INTERVAL_SECONDS, ge=MIN_INTERVAL_SECONDS)
    jitter_seconds: float | None = Field(default=None, ge=0)  # None: 10% of the interval
    tags: tuple[str, ...] = ()
    tickers: tuple[str, ...] | None = None
    api: ApiConfig | None = None
    # A source on loopback or a private network (an intranet feed, a test server): without
    # this, such addresses are refused on every hop, redirects and cursors included.
    allow_private_network: bool = False
    # Keep every symbol the source states; otherwise only the ones the company index knows,
    # so a feed cannot open a window series per made-up symbol.
    trust_stated_tickers: bool = False

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(
                f"{value!r} is not a slug (lower-case letters, digits, '-' or '_' between them)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.strip()

    @model_validator(mode="after")
    def _kind_and_api(self) -> Source:
        if self.kind == "api" and self.api is None:
            raise ValueError("kind 'api' needs an 'api' block (items_path, fields, ...)")
        if self.kind != "api" and self.api is not None:
            raise ValueError(f"an 'api' block only goes with kind 'api', not {self.kind!r}")
        if self.jitter_seconds is None:
            object.__setattr__(self, "jitter_seconds", self.interval_seconds * 0.1)
        return self

    @property
    def is_feed(self) -> bool:
        return self.kind in ("rss", "atom")

    @property
    def jitter(self) -> float:
        return float(self.jitter_seconds or 0.0)


def _find_secret_fields(value: Any, path: str = "") -> list[str]:
    """Dotted paths of mapping keys anywhere under `value` that look like literal credentials."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, child in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _looks_secret(key):
                found.append(here)
            found.extend(_find_secret_fields(child, here))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found.extend(_find_secret_fields(child, f"{path}[{i}]"))
    return found


def _source_label(entry: Any, index: int) -> str:
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
        return f"source {entry['name']!r} (#{index + 1})"
    return f"source #{index + 1}"


def _format_validation(origin: str, label: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(source)"
        lines.append(f"{origin}: {label}: field {field}: {err['msg']}")
    return "\n".join(lines)


def parse_sources(
    text: str, origin: str = "<sources>", environ: Mapping[str, str] | None = None
) -> list[Source]:
    """Validate sources YAML text. `origin` names the file in errors; `environ` (default: the
    process environment) is only checked for each `api_key_env`, never stored."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourcesError(f"{origin}: not valid YAML{yaml_problem(exc)}") from exc
    if isinstance(data, Mapping):
        extra = set(data) - {"sources"}
        if extra:
            raise SourcesError(f"{origin}: unknown top-level key(s) {sorted(extra)}; use 'sources'")
        data = data.get("sources")
    if not isinstance(data, list):
        raise SourcesError(f"{origin}: expected a list of sources (or a 'sources:' list)")

    sources: list[Source] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(data):
        label = _source_label(entry, index)
        if not isinstance(entry, Mapping):
            problems.append(f"{origin}: {label}: expected a mapping, got {type(entry).__name__}")
            continue
        # Checked before validation so the message is about the secret, not an unknown field.
        secrets = _find_secret_fields(entry)
        if secrets:
            problems.append(
                f"{origin}: {label}: field {secrets[0]}: literal API keys/tokens are not "
                "allowed in the sources file; put the key in an environment variable and "
                "name it with api.api_key_env"
            )
            continue
        try:
            source = Source.model_validate(dict(entry))
        except ValidationError as exc:
            problems.append(_format_validation(origin, label, exc))
            continue
        if source.name in seen:
            problems.append(
                f"{origin}: {label}: field name: duplicate source name {source.name!r} "
                f"(first used by source #{seen[source.name] + 1})"
            )
            continue
        seen[source.name] = index
        api_key_env = source.api.api_key_env if source.api else None
        if api_key_env and secret_from_env(api_key_env, environ) is None:
            problems.append(
                f"{origin}: {label}: field api.api_key_env: environment variable "
                f"{api_key_env} is not set"
            )
            continue
        sources.append(source)
    if problems:
        raise SourcesError("\n".join(problems))
    return sources


def load_sources(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Source]:
    """Read and validate a sources YAML file; raises SourcesError naming file, source, field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SourcesError(
            f"sources file {path} cannot be read ({reason}): fix --sources or "
            "FINSENT_SOURCES_FILE, or see `finsent ingest poll --example`"
        ) from exc
    return parse_sources(text, origin=str(path), environ=environ)


def example_sources_yaml() -> str:
    """An example sources file for the docs (loads once NEWSAPI_KEY is set)."""
    return """\
# finsent ingest sources. API keys never go here: name an environment variable instead.
sources:
  - name: cnbc-top
    url: https://www.cnbc.com/id/100727362/device/rss/rss.html
    kind: rss
    interval_seconds: 300        # >= 10; default 300
    tags: [markets, world]
    # allow_private_network: true  # only for a feed on loopback or a private network

  - name: seekingalpha-aapl
    url: https://seekingalpha.com/api/sa/combined/AAPL.xml
    kind: rss
    interval_seconds: 600
    jitter_seconds: 30           # default: 10% of the interval
    tags: [equities]
    tickers: [AAPL]              # added to every story from this source
    trust_stated_tickers: true   # keep symbols the feed states even when the index lacks them

  - name: nyt-business
    url: https://rss.nytimes.com/services/xml/rss/nyt/Business.xml
    kind: rss
    tags: [business]

  - name: bloomberg-sitemap
    url: https://www.bloomberg.com/sitemaps/news/latest.xml
    kind: rss                    # Google News sitemaps go through the feed parser too
    interval_seconds: 900

  - name: newsapi-business
    url: https://newsapi.org/v2/top-headlines
    kind: api
    interval_seconds: 900
    tags: [business]
    api:
      items_path: articles       # dotted path to the list of items
      fields:                    # dotted paths inside one item
        title: title
        url: url
        summary: description
        published: publishedAt
        tickers: tickers         # a list or a comma-separated string
      cursor:                    # optional pagination
        response_path: nextPage  # where the next-page token (or URL) is
        param: page              # send it as ?page=...; omit if the token is a URL
        max_pages: 3
      params: {category: business, language: en}
      headers: {Accept: application/json}
      api_key_env: NEWSAPI_KEY   # the key is read from this environment variable
      api_key_header: X-Api-Key  # or api_key_param: apiKey
"""
