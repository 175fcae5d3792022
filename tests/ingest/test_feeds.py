from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime
from email.utils import parsedate_to_datetime

import pytest
from support.feed_server import (
    FeedServer,
    Route,
    billion_laughs,
    fixture_bytes,
    fixture_route,
    item,
    rss,
    xxe_payload,
)

from finsent.ingest.feeds import clean_tickers, parse_feed
from finsent.ingest.fetch import Fetcher
from finsent.ingest.raw import EXCERPT_BYTES
from finsent.ingest.tickers import MAX_STATED_TICKERS

EXPECTED_COUNTS = {"cnbc": 30, "seekingalpha": 20, "nytimes": 50, "google": 100, "bloomberg": 16}


# -- the real feed snapshots, served over HTTP -----------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_real_fixture_over_http(name: str, server: FeedServer, fetcher: Fetcher) -> None:
    url = server.add(f"/{name}.xml", fixture_route(name))
    result = fetcher.get(url, source=name)
    warnings: list[str] = []
    stories, errors = parse_feed(name, result.body, result.content_type, warnings=warnings)
    assert errors == [] and warnings == []
    assert len(stories) == EXPECTED_COUNTS[name]
    for story in stories:
        assert story.source == name
        assert story.title.strip()
        assert story.url.startswith("https://")
        assert isinstance(story.published, str) and story.published
        assert 0 < len(story.raw) <= EXCERPT_BYTES


@pytest.mark.parametrize("name", ["cnbc", "seekingalpha", "nytimes", "google"])
def test_rss_dates_are_rfc822(name: str) -> None:
    stories, _ = parse_feed(name, fixture_bytes(name), None)
    for story in stories:
        when = parsedate_to_datetime(str(story.published))
        assert when.tzinfo is not None and 2000 < when.year <= 2026  # Google lists old stories too


def test_seekingalpha_symbol_categories_become_tickers() -> None:
    stories, _ = parse_feed("sa", fixture_bytes("seekingalpha"), None)
    assert all("AAPL" in s.tickers for s in stories)
    first = stories[0]
    assert first.title == "Wall Street Week Ahead"
    assert first.tickers[:3] == ("ORCL", "ADBE", "DG")
    assert "Wall Street Breakfast" not in first.tickers  # an author category, not a symbol


def test_google_news_links_are_kept_as_redirect_links() -> None:
    stories, _ = parse_feed("google", fixture_bytes("google"), None)
    assert all(s.url.startswith("https://news.google.com/rss/articles/") for s in stories)
    assert stories[0].title.startswith("Canada's labor market dips sharply")


def test_raw_excerpt_is_the_entry_as_json() -> None:
    stories, _ = parse_feed("cnbc", fixture_bytes("cnbc"), None)
    excerpt = stories[0].raw.decode("utf-8")
    assert json.loads(excerpt)["title"] == stories[0].title  # short entry: not truncated


def test_bloomberg_news_sitemap() -> None:
    stories, errors = parse_feed("bloomberg", fixture_bytes("bloomberg"), "application/xml")
    assert errors == [] and len(stories) == 16
    first = stories[0]
    assert first.title == "Trump Wants Countries to Send Warships, UAE Port Suspends, More"
    assert first.url.startswith("https://www.bloomberg.com/news/")
    assert first.published == "2026-03-15T00:48:24.900Z"
    assert first.tickers == ()  # the fixture's stock_tickers are empty
    for story in stories:
        assert datetime.fromisoformat(str(story.published).replace("Z", "+00:00")).year == 2026
        assert b"<" in story.raw  # the <url> element's XML


def test_sitemap_tickers_and_missing_title() -> None:
    body = (
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        b'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        b"<url><loc>https://x.test/1</loc><news:news><news:publication_date>2026-03-15"
        b"</news:publication_date><news:title>Apple rallies</news:title>"
        b"<news:stock_tickers>NASDAQ:AAPL, NYSE:IBM</news:stock_tickers></news:news></url>"
        b"<url><loc>https://x.test/2</loc><news:news><news:title></news:title></news:news></url>"
        b"</urlset>"
    )
    stories, errors = parse_feed("sm", body, None)
    assert [s.tickers for s in stories] == [("AAPL", "IBM")]
    assert [e.reason for e in errors] == ["missing field: title"]
    assert b"https://x.test/2" in errors[0].raw


# -- other feed shapes ---------------------------------------------------------------------


def test_atom_feed_prefers_published_then_updated() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>urn:a</id>
<updated>2026-03-09T10:00:00Z</updated>
<entry><title>Atom one</title><id>urn:1</id><link href="https://a.test/1"/>
<published>2026-03-09T08:00:00Z</published><updated>2026-03-09T09:00:00Z</updated>
<summary>First summary</summary>
<category term="MSFT" scheme="https://a.test/symbol"/></entry>
<entry><title>Atom two</title><id>urn:2</id><link href="https://a.test/2"/>
<updated>2026-03-09T09:30:00Z</updated><content type="text">Body two</content></entry>
</feed>"""
    stories, errors = parse_feed("atom", body, "application/atom+xml")
    assert errors == []
    assert [(s.title, s.url, s.published) for s in stories] == [
        ("Atom one", "https://a.test/1", "2026-03-09T08:00:00Z"),
        ("Atom two", "https://a.test/2", "2026-03-09T09:30:00Z"),
    ]
    assert stories[0].summary == "First summary" and stories[0].tickers == ("MSFT",)
    assert stories[1].summary == "Body two"


def test_rdf_feed() -> None:
    body = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://r.test/"><title>R</title><link>https://r.test/</link>
<description>d</description></channel>
<item rdf:about="https://r.test/1"><title>RDF story</title><link>https://r.test/1</link>
<dc:date>2026-03-09T10:00:00Z</dc:date></item>
</rdf:RDF>"""
    stories, errors = parse_feed("rdf", body, None)
    assert errors == []
    assert [(s.title, s.url, s.published) for s in stories] == [
        ("RDF story", "https://r.test/1", "2026-03-09T10:00:00Z")
    ]


def test_rss_domain_symbol_categories() -> None:
    body = rss(
        "<item><title>Deal</title><link>http://e.test/1</link>"
        '<category domain="https://e.test/symbol">msft</category>'
        '<category domain="https://e.test/topics">Tech</category></item>'
    )
    [story], _ = parse_feed("x", body, None)
    assert story.tickers == ("MSFT",)


def test_entries_without_title_are_errors_not_fatal() -> None:
    body = rss(item("Kept story") + "<item><link>http://e.test/no-title</link></item>")
    stories, errors = parse_feed("x", body, None)
    assert [s.title for s in stories] == ["Kept story"]
    assert [e.reason for e in errors] == ["missing field: title"]
    assert errors[0].source == "x" and b"no-title" in errors[0].raw


def test_clean_tickers() -> None:
    assert clean_tickers("NASDAQ:aapl, $msft;brk.b  AAPL") == ("AAPL", "MSFT", "BRK.B")
    assert clean_tickers(["<script>", "", "Wall Street Breakfast", "KO"]) == ("KO",)
    assert clean_tickers(None) == ()


# -- hostile and broken input ----------------------------------------------------------------


def test_billion_laughs_is_rejected_fast_without_expansion() -> None:
    body = billion_laughs(levels=10)  # 10^9 "lol"s if expanded
    tracemalloc.start()
    started = time.perf_counter()
    stories, errors = parse_feed("bomb", body, None)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 5 * 1024 * 1024
    assert stories == []
    [error] = errors
    assert error.reason.startswith("XML bomb rejected: ")
    assert b"lollollol" not in error.raw  # the excerpt is the payload as sent, unexpanded


@pytest.mark.parametrize(
    "body",
    [
        # A stray "<" makes the document malformed before expat reaches the DTD.
        billion_laughs().replace(b"\n<!DOCTYPE", b"\n<<!DOCTYPE", 1),
        billion_laughs().decode().encode("utf-16"),
    ],
    ids=["malformed-prefix", "utf-16"],
)
def test_bomb_variants_are_rejected(body: bytes) -> None:
    started = time.perf_counter()
    stories, errors = parse_feed("bomb", body, None)
    assert time.perf_counter() - started < 2.0
    assert stories == [] and errors[0].reason.startswith("XML bomb rejected")


def test_xxe_is_rejected_and_nothing_is_read(server: FeedServer) -> None:
    for target in ("file:///etc/passwd", server.url("/secret.txt")):
        server.add("/secret.txt", Route(body=b"TOP-SECRET", content_type="text/plain"))
        stories, errors = parse_feed("xxe", xxe_payload(target), None)
        assert stories == []
        [error] = errors
        assert error.reason.startswith("XML bomb rejected: ") and "xxe" in error.reason
        assert b"root:" not in error.raw and b"TOP-SECRET" not in error.raw
    assert server.hits("/secret.txt") == []


def test_external_dtd_is_never_fetched(server: FeedServer) -> None:
    server.add("/evil.dtd", Route(body=b'<!ENTITY t "pwned">', content_type="text/plain"))
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{server.url("/evil.dtd")}">\n'
    ).encode() + rss(item("Plain title")).split(b"?>", 1)[1]
    stories, errors = parse_feed("dtd", body, None)
    assert [s.title for s in stories] == ["Plain title"] and errors == []
    assert server.hits("/evil.dtd") == []


@pytest.mark.parametrize(
    "body",
    [b"this is not xml at all {", b"\x80\x81\x82\xff\xfe garbage", b"   ", b""],
    ids=["text", "binary", "blank", "empty"],
)
def test_unusable_body_is_malformed_xml(body: bytes) -> None:
    stories, errors = parse_feed("bad", body, "application/rss+xml")
    assert stories == []
    [error] = errors
    assert error.reason.startswith("malformed XML: ")


def test_html_page_is_not_a_feed() -> None:
    page = b"<html><body><p>Hello</p></body></html>"
    stories, errors = parse_feed("html", page, None)
    assert stories == [] and errors[0].reason.startswith("not a feed: root element <html>")
    # Served as text/html, feedparser refuses it outright.
    stories, errors = parse_feed("html", page, "text/html")
    assert stories == [] and errors[0].reason == "malformed XML: text/html is not an XML media type"


def test_truncated_feed_keeps_entries_with_a_warning() -> None:
    body = rss(item("Complete one") + item("Complete two"))[:-30]  # cut inside </channel>
    warnings: list[str] = []
    stories, errors = parse_feed("cut", body, None, warnings=warnings)
    assert [s.title for s in stories] == ["Complete one", "Complete two"]
    assert errors == [] and len(warnings) == 1 and "despite" in warnings[0]


def test_invalid_utf8_keeps_entries_with_a_warning() -> None:
    body = rss(item("Caf\udce9 prices \udcff\udcfe rise") + item("Clean title"))
    assert b"\xe9" in body and b"\xff\xfe" in body  # really invalid UTF-8
    warnings: list[str] = []
    stories, errors = parse_feed(
        "enc", body, "application/rss+xml; charset=utf-8", warnings=warnings
    )
    assert errors == []
    assert [s.title for s in stories][1] == "Clean title"
    assert "prices" in stories[0].title
    assert warnings and "parsed as" in warnings[0]


def test_script_in_title_and_summary_is_data_not_a_crash() -> None:
    body = rss(
        "<item><title>&lt;script&gt;alert(1)&lt;/script&gt;Fed holds rates</title>"
        "<link>http://e.test/s</link>"
        "<description><![CDATA[<p>Rates</p><script>steal()</script>]]></description></item>"
        "<item><title><script>alert(2)</script>Stocks rise</title><link>http://e.test/t</link>"
        "</item>"
    )
    stories, errors = parse_feed("xss", body, None)
    assert errors == [] and len(stories) == 2
    assert "Fed holds rates" in stories[0].title  # escaped text stays text, for normalize
    assert "<script" not in stories[0].summary and "steal" not in stories[0].summary
    assert "Stocks rise" in stories[1].title and "<script" not in stories[1].title


# -- declarations the ASCII search cannot see, DTDs, attribute and symbol floods -------------


def _bomb_in(encoding: str) -> bytes:
    """Three levels of 50x entities (125,000 characters) in a document declared ``encoding``."""
    decls = f'<!ENTITY a "{"x" * 50}"><!ENTITY b "{"&a;" * 50}"><!ENTITY c "{"&b;" * 50}">'
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE rss [{decls}]>'
        '<rss version="2.0"><channel><title>t</title><item><title>&c;</title>'
        "<link>http://x.test/a</link></item></channel></rss>"
    ).encode(encoding)


@pytest.mark.parametrize("encoding", ["cp037", "cp500", "utf-7", "utf-16"])
def test_a_bomb_in_an_encoding_the_ascii_search_misses_is_refused(encoding: str) -> None:
    stories, errors = parse_feed("x", _bomb_in(encoding), "application/xml")
    assert stories == []
    assert [e.reason.split(":")[0] for e in errors] == ["XML bomb rejected"]


def test_a_dtd_internal_subset_is_refused() -> None:
    body = rss(item("Story")).replace(
        b"<rss ", b'<!DOCTYPE rss [<!ATTLIST item x CDATA "default">]><rss ', 1
    )
    stories, errors = parse_feed("x", body, None)
    assert stories == []
    assert [e.reason for e in errors] == ["XML bomb rejected: DTD with an internal subset"]


def test_an_external_doctype_alone_is_still_read() -> None:
    doctype = b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "x.dtd">'
    body = rss(item("Old-style feed")).replace(b"<rss ", doctype + b"<rss ", 1)
    stories, errors = parse_feed("x", body, None)
    assert [s.title for s in stories] == ["Old-style feed"] and errors == []


def test_an_element_with_thousands_of_attributes_is_refused_fast() -> None:
    attributes = " ".join(f'a{i}="x"' for i in range(20_000))
    body = rss(f"<item {attributes}><title>Hi</title><link>http://x.test/a</link></item>")
    started = time.monotonic()
    stories, errors = parse_feed("x", body, None)
    assert time.monotonic() - started < 1.0
    assert stories == []
    assert [e.reason for e in errors] == ["malformed XML: an element with more than 256 attributes"]


def test_a_flood_of_stated_symbols_is_cut_short_fast() -> None:
    symbols = [
        f"Q{a}{b}{c}"
        for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        for b in "ABCDEFGHIJ"
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ][:20_000]
    started = time.monotonic()
    kept = clean_tickers(symbols)
    assert time.monotonic() - started < 0.5
    assert kept == tuple(symbols[:MAX_STATED_TICKERS])


def test_an_unknown_declared_encoding_is_an_ingest_error_not_a_crash() -> None:
    stories, errors = parse_feed("x", b'<?xml version="1.0" encoding="bogus"?><rss/>', None)
    assert stories == [] and [e.source for e in errors] == ["x"]
