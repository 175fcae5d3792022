from __future__ import annotations

from pathlib import Path

import pytest

from finsent.ingest.sources import (
    Source,
    SourcesError,
    example_sources_yaml,
    load_sources,
    parse_sources,
)

ENV = {"NEWSAPI_KEY": "k-123"}

API_SOURCE = """\
- name: news-api
  url: https://api.example.test/v1/news
  kind: api
  api:
    items_path: data.items
    fields: {title: headline, url: link, published: ts, tickers: symbols}
    cursor: {response_path: meta.next, param: cursor, max_pages: 3}
    params: {lang: en}
    api_key_env: NEWSAPI_KEY
    api_key_param: key_param_name
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_yaml_loads_with_defaults() -> None:
    sources = parse_sources(example_sources_yaml(), environ=ENV)
    by_name = {s.name: s for s in sources}
    assert len(by_name) == len(sources) == 5
    cnbc = by_name["cnbc-top"]
    assert cnbc.kind == "rss" and cnbc.is_feed
    assert cnbc.interval_seconds == 300 and cnbc.jitter == pytest.approx(30.0)
    assert cnbc.tags == ("markets", "world") and cnbc.tickers is None
    assert by_name["seekingalpha-aapl"].jitter == 30 and by_name["seekingalpha-aapl"].tickers == (
        "AAPL",
    )
    api = by_name["newsapi-business"].api
    assert api is not None and api.cursor is not None
    assert api.items_path == "articles" and api.fields.published == "publishedAt"
    assert api.cursor.param == "page" and api.cursor.max_pages == 3
    assert api.api_key_env == "NEWSAPI_KEY" and api.api_key_header == "X-Api-Key"


def test_defaults_and_mapping_form(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - {name: a, url: 'http://x.test/f', kind: atom}\n")
    [source] = load_sources(path, environ={})
    assert source == Source(name="a", url="http://x.test/f", kind="atom")
    assert source.interval_seconds == 300 and source.jitter == 30.0 and source.is_feed


def test_the_key_value_never_lands_in_the_model() -> None:
    [source] = parse_sources(API_SOURCE, environ={"NEWSAPI_KEY": "super-secret-value"})
    assert "super-secret-value" not in repr(source.model_dump())
    assert source.api is not None and source.api.api_key_param == "key_param_name"


def test_duplicate_name_is_an_error_naming_file_source_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- {name: dup, url: 'http://a.test/', kind: rss}\n"
        "- {name: dup, url: 'http://b.test/', kind: rss}\n",
    )
    with pytest.raises(SourcesError) as info:
        load_sources(path, environ={})
    message = str(info.value)
    assert str(path) in message and "source 'dup' (#2)" in message
    assert "field name" in message and "duplicate" in message


def test_bad_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "- {name: x, url: 'http://a.test/', kind: json}\n")
    with pytest.raises(SourcesError, match=r"sources.yaml: source 'x' \(#1\): field kind"):
        load_sources(path, environ={})


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        ("api_key: abc123", "api_key"),
        ("token: abc123", "token"),
        ("apiKey: abc123", "apiKey"),
        ("secret: abc123", "secret"),
    ],
)
def test_literal_key_at_source_level_is_rejected(snippet: str, field: str) -> None:
    text = f"- name: x\n  url: 'http://a.test/'\n  kind: rss\n  {snippet}\n"
    with pytest.raises(SourcesError) as info:
        parse_sources(text, origin="s.yaml", environ={})
    message = str(info.value)
    assert f"source 'x' (#1): field {field}:" in message
    assert "literal API keys" in message and "api_key_env" in message
    assert "abc123" not in message  # the error must not echo the secret


@pytest.mark.parametrize(
    "block",
    [
        "params: {apiKey: abc123}",
        "params: {access_token: abc123}",
        "headers: {X-Api-Key: abc123}",
        "headers: {Authorization: 'Bearer abc123'}",
    ],
)
def test_literal_key_inside_the_api_block_is_rejected(block: str) -> None:
    text = API_SOURCE.replace("    params: {lang: en}", f"    {block}")
    with pytest.raises(SourcesError, match=r"field api\.(params|headers)\.\S+: literal API keys"):
        parse_sources(text, environ=ENV)


def test_missing_env_var_is_a_load_time_error() -> None:
    with pytest.raises(SourcesError) as info:
        parse_sources(API_SOURCE, origin="s.yaml", environ={})
    message = str(info.value)
    assert "s.yaml: source 'news-api' (#1): field api.api_key_env" in message
    assert "NEWSAPI_KEY is not set" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- {name: x, url: 'http://a.test/', kind: rss, interval_seconds: 5}", "interval_seconds"),
        ("- {name: Not A Slug, url: 'http://a.test/', kind: rss}", "field name: .*not a slug"),
        ("- {name: x, url: 'ftp://a.test/', kind: rss}", "field url: .*not an http"),
        ("- {name: x, url: 'http://a.test/', kind: rss, colour: red}", "field colour"),
        ("- {name: x, url: 'http://a.test/', kind: api}", "kind 'api' needs an 'api' block"),
        (
            "- {name: x, url: 'http://a.test/', kind: rss, api: {items_path: a, "
            "fields: {title: t}}}",
            "only goes with kind 'api'",
        ),
        (
            "- {name: x, url: 'http://a.test/', kind: api, api: {items_path: a, "
            "fields: {title: t}, api_key_env: K}}",
            "exactly one of api_key_param or api_key_header",
        ),
        (
            "- {name: x, url: 'http://a.test/', kind: api, api: {items_path: a, fields: {}}}",
            r"field api\.fields\.title",
        ),
        ("- just a string", "source #1: expected a mapping"),
        ("name: x", "unknown top-level key"),
        ("[unclosed", "not valid YAML"),
        ("", "expected a list of sources"),
    ],
)
def test_validation_errors_are_clear(text: str, expected: str) -> None:
    with pytest.raises(SourcesError, match=expected):
        parse_sources(text, origin="s.yaml", environ={"K": "v"})


def test_all_problems_are_reported_together() -> None:
    text = (
        "- {name: a, url: 'http://a.test/', kind: json}\n"
        "- {name: b, url: 'http://a.test/', kind: rss, interval_seconds: 1}\n"
    )
    with pytest.raises(SourcesError) as info:
        parse_sources(text, environ={})
    assert "source 'a' (#1): field kind" in str(info.value)
    assert "source 'b' (#2): field interval_seconds" in str(info.value)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SourcesError, match="sources file .*nope.yaml cannot be read"):
        load_sources(missing)
