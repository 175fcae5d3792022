from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.feed_server import FeedServer, Handler, RecordedRequest, Route, paged_api_handler

from finsent.ingest.api_source import fetch_api, get_path
from finsent.ingest.fetch import Fetcher
from finsent.ingest.sources import Source, parse_sources

KEY = "test-key-9f8e7d"
PAGES: list[list[dict[str, object]]] = [
    [
        {
            "headline": "Apple beats estimates",
            "link": "https://api.test/a1",
            "teaser": "Strong iPhone sales",
            "ts": "2026-03-09T10:00:00Z",
            "symbols": ["AAPL", "MSFT"],
        },
        {"headline": "Oil slips", "link": "https://api.test/a2", "ts": 1773050400, "symbols": ""},
    ],
    [
        {
            "headline": "Banks rally",
            "link": "https://api.test/a3",
            "ts": 1773050400000,
            "symbols": "JPM, BAC",
        },
        {"link": "https://api.test/no-title"},
    ],
]


def api_source(
    url: str, *, placement: str = "api_key_header: X-Api-Key", cursor: str = ""
) -> Source:
    cursor = cursor or "cursor: {response_path: next, param: cursor, max_pages: 5}"
    text = f"""\
- name: test-api
  url: {url}
  kind: api
  api:
    items_path: data.items
    fields: {{title: headline, url: link, summary: teaser, published: ts, tickers: symbols}}
    {cursor}
    params: {{lang: en}}
    api_key_env: TEST_API_KEY
    {placement}
"""
    [source] = parse_sources(text, environ={"TEST_API_KEY": KEY})
    return source


def test_get_path() -> None:
    doc = {"data": {"items": [{"t": "x"}, {"t": "y"}]}, "n": None}
    assert get_path(doc, "data.items.1.t") == "y"
    assert get_path(doc, "data.items.-1.t") == "y"
    assert get_path(doc, "n") is None
    missing = get_path(doc, "data.nope")
    assert missing is get_path(doc, "data.items.7") and missing is not None


def test_two_pages_with_key_in_header(
    server: FeedServer, fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_KEY", KEY)
    url = server.add(
        "/api/news",
        Route(handler=paged_api_handler(PAGES, key_header="X-Api-Key", expected_key=KEY)),
    )
    stories, errors = fetch_api(api_source(url), fetcher)  # key from the real environment

    assert [s.title for s in stories] == ["Apple beats estimates", "Oil slips", "Banks rally"]
    first, second, third = stories
    assert first.url == "https://api.test/a1" and first.summary == "Strong iPhone sales"
    assert first.published == "2026-03-09T10:00:00Z" and first.tickers == ("AAPL", "MSFT")
    assert second.published == datetime(2026, 3, 9, 10, 0, tzinfo=UTC) and second.tickers == ()
    assert third.published == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)  # epoch milliseconds
    assert third.tickers == ("JPM", "BAC")
    assert all(s.source == "test-api" and s.raw.startswith(b"{") for s in stories)
    assert [e.reason for e in errors] == ["missing field: title"]

    hits = server.hits("/api/news")
    assert [h.query.get("cursor") for h in hits] == [None, ["2"]]
    assert all(h.headers["X-Api-Key"] == KEY and h.query["lang"] == ["en"] for h in hits)


def test_key_in_query_param(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.add(
        "/api/news", Route(handler=paged_api_handler(PAGES, key_param="apikey", expected_key=KEY))
    )
    source = api_source(url, placement="api_key_param: apikey")
    stories, _ = fetch_api(source, fetcher, environ={"TEST_API_KEY": KEY})
    assert len(stories) == 3
    assert all(h.query["apikey"] == [KEY] for h in server.hits("/api/news"))


def test_missing_key_at_call_time(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.add("/api/news", Route(handler=paged_api_handler(PAGES)))
    stories, errors = fetch_api(api_source(url), fetcher, environ={})
    assert stories == []
    assert [e.reason for e in errors] == [
        "missing API key: environment variable TEST_API_KEY is not set"
    ]
    assert server.hits("/api/news") == []  # nothing sent without the key


def test_wrong_key_is_http_401_and_the_key_never_leaks(
    server: FeedServer, fetcher: Fetcher
) -> None:
    url = server.add(
        "/api/news", Route(handler=paged_api_handler(PAGES, key_param="apikey", expected_key=KEY))
    )
    source = api_source(url, placement="api_key_param: apikey")
    stories, errors = fetch_api(source, fetcher, environ={"TEST_API_KEY": "wrong-key-123"})
    assert stories == []
    [error] = errors
    assert error.reason == "HTTP 401"
    assert "wrong-key-123" not in str(error) and b"wrong-key-123" not in error.raw


def test_max_pages_bounds_pagination(server: FeedServer, fetcher: Fetcher) -> None:
    many = [[{"headline": f"Story {i}"}] for i in range(10)]
    url = server.add("/api/news", Route(handler=paged_api_handler(many, expected_key=KEY)))
    source = api_source(url, cursor="cursor: {response_path: next, param: cursor, max_pages: 3}")
    stories, errors = fetch_api(source, fetcher, environ={"TEST_API_KEY": KEY})
    assert [s.title for s in stories] == ["Story 0", "Story 1", "Story 2"] and errors == []
    assert len(server.hits("/api/news")) == 3


def test_cursor_as_next_url(server: FeedServer, fetcher: Fetcher) -> None:
    def handle(handler: Handler, request: RecordedRequest) -> None:
        page = int(request.query.get("p", ["1"])[0])
        body: dict[str, object] = {"data": {"items": [{"headline": f"Page {page}"}]}}
        if page < 3:
            body["links"] = {"next": f"/api/feed?p={page + 1}"}  # relative next-page URL
        handler.send_json(body)

    url = server.add("/api/feed", Route(handler=handle))
    source = api_source(url, cursor="cursor: {response_path: links.next}")
    stories, errors = fetch_api(source, fetcher, environ={"TEST_API_KEY": KEY})
    assert [s.title for s in stories] == ["Page 1", "Page 2", "Page 3"] and errors == []


def test_repeated_cursor_stops(server: FeedServer, fetcher: Fetcher) -> None:
    def handle(handler: Handler, request: RecordedRequest) -> None:
        handler.send_json({"data": {"items": [{"headline": "Same"}]}, "next": "again"})

    url = server.add("/api/loop", Route(handler=handle))
    stories, _ = fetch_api(api_source(url), fetcher, environ={"TEST_API_KEY": KEY})
    assert len(stories) == 2 and len(server.hits("/api/loop")) == 2


def test_later_page_failure_keeps_earlier_stories(server: FeedServer, fetcher: Fetcher) -> None:
    def handle(handler: Handler, request: RecordedRequest) -> None:
        if request.query.get("cursor"):
            handler.respond(500, b"boom", "text/plain")
        else:
            handler.send_json({"data": {"items": [{"headline": "First page"}]}, "next": "2"})

    url = server.add("/api/flaky", Route(handler=handle))
    stories, errors = fetch_api(api_source(url), fetcher, environ={"TEST_API_KEY": KEY})
    assert [s.title for s in stories] == ["First page"]
    assert [e.reason for e in errors] == ["page 2: HTTP 500"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid JSON: "),
        (b'{"data": {}}', "missing field: items_path 'data.items'"),
        (b'{"data": {"items": {"a": 1}}}', "items_path 'data.items' is a dict, not a list"),
        (b'{"data": {"items": ["just a string"]}}', "item is not an object: str"),
    ],
)
def test_bad_json_shapes(server: FeedServer, fetcher: Fetcher, body: bytes, reason: str) -> None:
    url = server.add("/api/bad", Route(body=body, content_type="application/json"))
    stories, errors = fetch_api(api_source(url), fetcher, environ={"TEST_API_KEY": KEY})
    assert stories == []
    assert errors[0].reason.startswith(reason)


# -- keys stay on the configured origin ------------------------------------------------------


def test_a_redirect_to_another_origin_never_gets_the_key(
    server: FeedServer, fetcher: Fetcher
) -> None:
    with FeedServer() as other:
        stolen = other.add("/steal", Route(body=b'{"data": {"items": []}}'))

        def redirect(handler: Handler, request: RecordedRequest) -> None:
            handler.respond(302, b"", None, {"Location": stolen})

        url = server.add("/api", Route(handler=redirect))
        stories, errors = fetch_api(api_source(url), fetcher, environ={"TEST_API_KEY": KEY})
        assert other.hits("/steal") == []
    assert stories == []
    assert [e.reason for e in errors] == [
        "redirect to another origin refused (the request has a key)"
    ]


def test_a_cursor_to_another_origin_is_refused_and_earlier_pages_kept(
    server: FeedServer, fetcher: Fetcher
) -> None:
    with FeedServer() as other:
        stolen = other.add("/steal", Route(body=b'{"data": {"items": []}}'))

        def first_page(handler: Handler, request: RecordedRequest) -> None:
            handler.send_json({"data": {"items": PAGES[0]}, "next": stolen})

        url = server.add("/api", Route(handler=first_page))
        source = api_source(
            url,
            placement="api_key_param: apiKey",
            cursor="cursor: {response_path: next, max_pages: 3}",
        )
        stories, errors = fetch_api(source, fetcher, environ={"TEST_API_KEY": KEY})
        assert other.hits("/steal") == []
    assert [s.title for s in stories] == ["Apple beats estimates", "Oil slips"]
    assert [e.reason for e in errors] == ["page 1: cursor to another origin refused"]
