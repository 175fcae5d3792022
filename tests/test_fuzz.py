"""Hostile input against the ingest edge: feed bodies (parse_feed), raw stories (normalize),
replay files (load) and JSON APIs behind a fake transport (fetch_api, through the Fetcher's own
decoding, redirects and address checks); and Kafka payloads (valid records with hostile fields,
raw bytes, deep nests) through the runner's decoding into each consuming stage's logic.

The property, for every generated input: only the project's typed errors come out (IngestError
inside results, NormalizeError, RowError; a stage's input ends as output or a dead letter), one input takes under 2 s, and it grows the
process's peak memory by under 200 MB. `make test` runs a small fixed budget, derandomized;
`make fuzz` runs the long mode (FUZZ_EXAMPLES examples per target, random seeds).
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsent.core.feed_files import RowError, read_rows
from finsent.ingest import fetch as fetch_module
from finsent.ingest.api_source import fetch_api
from finsent.ingest.feeds import parse_feed
from finsent.ingest.fetch import Fetcher
from finsent.ingest.normalize import NormalizeError, normalize
from finsent.ingest.raw import IngestError, RawStory
from finsent.ingest.replay import ReplayStats, load
from finsent.ingest.sources import parse_sources
from finsent.ingest.tickers import MAX_TICKERS

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))  # 0: the small budget of `make test`
LONG = EXAMPLES > 0
MAX_SECONDS = 2.0
MAX_BYTES = 200 * 1024 * 1024
NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


def budget(small: int) -> Callable[[Any], Any]:
    """Hypothesis settings for one target: `small` examples, fixed seeds, in `make test`."""
    return settings(
        max_examples=EXAMPLES or small,
        derandomize=not LONG,
        deadline=None,  # timed below, with the memory, per input
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """Load what the first call loads once per process (company index, language profiles),
    so it is not charged to one generated input."""
    normalize(RawStory("w", "Apple Inc. und die Aktien steigen"), fetched_at=NOW, now=NOW)
    parse_feed("w", b"<rss version='2.0'><channel><item><title>x</title></item></channel></rss>")


def _resident_bytes() -> int:
    """This process's resident memory now (Linux), or 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@contextmanager
def bounded() -> Iterator[None]:
    """Fails the example when it takes too long or holds too much memory.

    Memory is the process's peak resident size: an input that raises it has grown the process
    by the new peak less what it held when the input started (tracing every allocation would
    slow the inputs tenfold and blur the time bound)."""
    resident, peak = _resident_bytes(), _peak_bytes()
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    new_peak = _peak_bytes()
    assert elapsed < MAX_SECONDS, f"one input took {elapsed:.2f} s"
    grown = new_peak - resident
    assert new_peak == peak or grown < MAX_BYTES, f"one input grew memory by {grown / 2**20:.0f} MB"


# -- hostile text ----------------------------------------------------------------------------

_PIECES = [
    "<a ",
    "<a",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<![ x ]]>",
    "</",
    "<script>",
    "</script>",
    "<p>",
    '<img alt="a<b">',
    "&amp;",
    "&amp;amp;",
    "&lt;b&gt;",
    "&#0;",
    "&#x110000;",
    "\u200d",
    "\u202e",
    "\ufeff",
    "\ud800",
    "\x00",
    "$AAPL",
    "$AA\u200dPL",
    "\uff04\uff2d\uff33\uff26\uff34",
    "NASDAQ:MSFT",
    "Apple Inc.",
    " ",
    "\n",
    "http://",
    "%",
    "\u0130",
]
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(_PIECES),
        st.tuples(st.sampled_from(_PIECES), st.integers(1, 20_000)).map(lambda p: p[0] * p[1]),
        st.text(max_size=40),
    ),
    max_size=12,
).map("".join)


# -- parse_feed ------------------------------------------------------------------------------

_ENCODINGS = ["utf-8", "utf-16", "utf-16-be", "cp037", "cp500", "utf-7", "iso-8859-1", "bogus"]
_DOCTYPES = [
    "",
    "<!DOCTYPE rss>",
    '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "x.dtd">',
    '<!DOCTYPE rss [<!ENTITY a "xxxxxxxxxx">]>',
    '<!DOCTYPE rss [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    '<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE rss [<!ATTLIST item x CDATA "y">]>',
]
_XML_PIECES = [
    '<rss version="2.0"><channel><title>t</title>',
    "</channel></rss>",
    "<item>",
    "</item>",
    "<title>",
    "</title>",
    "<link>http://example.test/a</link>",
    "<description>",
    "</description>",
    '<category domain="https://x.test/symbol">',
    '<category type="symbol">',
    "</category>",
    "&a;",
    "&b;",
    "&x;",
    "<![CDATA[<p>hi</p>]]>",
    '<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>x</title></entry></feed>',
    '<urlset xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url><news:title>n',
    "</news:title></url></urlset>",
]
_xml_piece = st.one_of(
    st.sampled_from(_XML_PIECES),
    hostile_text.map(lambda t: t.replace("<", "&lt;")),
    st.integers(1, 5000).map(lambda n: "<item " + " ".join(f'a{i}="x"' for i in range(n)) + ">"),
    st.tuples(st.sampled_from(_XML_PIECES), st.integers(1, 3000)).map(lambda p: p[0] * p[1]),
)


@st.composite
def feed_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2000))
    encoding = draw(st.sampled_from(_ENCODINGS))
    prolog = draw(st.sampled_from(["", f'<?xml version="1.0" encoding="{encoding}"?>']))
    text = prolog + draw(st.sampled_from(_DOCTYPES)) + "".join(draw(st.lists(_xml_piece)))
    try:
        return text.encode(encoding, "replace")
    except LookupError:
        return text.encode("utf-8", "surrogatepass")


@budget(small=60)
@given(
    body=feed_bodies(),
    content_type=st.sampled_from(
        [None, "application/xml", "text/xml", "application/rss+xml; charset=cp037", "text/html"]
    ),
)
def test_parse_feed_gives_only_typed_errors(body: bytes, content_type: str | None) -> None:
    with bounded():
        stories, errors = parse_feed("fuzz", body, content_type, base_url="http://x.test/")
    assert all(isinstance(e, IngestError) for e in errors)
    assert all(isinstance(s, RawStory) for s in stories)


# -- normalize -------------------------------------------------------------------------------

_anything = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    hostile_text,
    st.lists(st.text(max_size=8), max_size=3),
    st.datetimes(timezones=st.none() | st.just(UTC)),
)


@budget(small=60)
@given(
    title=hostile_text,
    summary=st.one_of(hostile_text, _anything),
    url=st.one_of(hostile_text, st.text(max_size=80)),
    source=st.one_of(st.text(max_size=20), _anything),
    published=_anything,
    tickers=st.one_of(
        st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=50).map(tuple),
        st.integers(1, 20_000).map(lambda n: tuple(f"Q{i:05d}" for i in range(n))),
        _anything,
    ),
)
def test_normalize_raises_only_normalize_error(
    title: str, summary: Any, url: str, source: Any, published: Any, tickers: Any
) -> None:
    story = RawStory(source, title, url, summary, published, tickers)
    with bounded():
        try:
            item = normalize(story, fetched_at=NOW, now=NOW)
        except NormalizeError as exc:
            assert exc.reason
            return
    assert len(item.tickers) <= MAX_TICKERS
    item.title.encode("utf-8")
    item.body.encode("utf-8")


# -- replay rows -----------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
_row = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(hostile_text, _json),
        "body": st.one_of(hostile_text, _json),
        "url": st.one_of(st.text(max_size=40), _json),
        "published_at": st.one_of(st.text(max_size=30), _json),
        "tickers": _json,
        "source": _json,
        "id": _json,
    },
)
_line = st.one_of(
    _row.map(lambda row: json.dumps(row).encode()),
    st.binary(max_size=200),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth + b"]" * depth),
)


@budget(small=25)
@given(lines=st.lists(_line, max_size=6), as_csv=st.booleans(), huge=st.booleans())
def test_a_replay_file_gives_rows_or_dead_letters(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], as_csv: bool, huge: bool
) -> None:
    folder = tmp_path_factory.mktemp("replay")
    if as_csv:
        path = folder / "feed.csv"
        cells = [line.decode("utf-8", "replace").replace('"', '""') for line in lines]
        if huge:
            cells.append("x" * 200_000)  # over the csv module's field limit
        path.write_text("title,body\n" + "".join(f'"{c}",b\n' for c in cells))
    else:
        path = folder / "feed.jsonl"
        path.write_bytes(b"\n".join(lines))
    stats = ReplayStats()
    with bounded():
        items = load(path, "fuzz", None, stats, NOW)
        rows = list(read_rows(path))
    assert stats.read == len(items) + stats.dead == len(rows)
    assert all(isinstance(row, dict | RowError) for _, _, row in rows)


# -- the API path ----------------------------------------------------------------------------

API = parse_sources(
    "- name: fuzz-api\n  url: https://api.example.test/news\n  kind: api\n"
    "  api: {items_path: data.items, fields: {title: t, url: u, summary: s, published: p,"
    " tickers: k}, cursor: {response_path: next, max_pages: 4}, api_key_env: FUZZ_KEY,"
    " api_key_header: X-Api-Key}\n",
    environ={"FUZZ_KEY": "fuzz-key"},
)[0]
_item = st.fixed_dictionaries(
    {},
    optional={"t": _json | hostile_text, "u": _json, "s": _json, "p": _json, "k": _json},
)
_document = st.one_of(
    st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"items": st.lists(_item | _json, max_size=5)})},
        optional={
            "next": st.one_of(
                st.text(max_size=30),
                st.sampled_from(
                    [
                        "https://api.example.test/news?page=2",
                        "https://evil.example.test/steal",
                        "http://169.254.169.254/latest/",
                        "http://[::1]:80/",
                        "//api.example.test/x",
                    ]
                ),
            )
        },
    ),
    _json,
)


@st.composite
def responses(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        location = draw(
            st.sampled_from(
                ["https://evil.example.test/", "/news?x=1", "http://10.0.0.1/", "::::", ""]
            )
        )
        return 302, {"Location": location}, b""
    body = json.dumps(draw(_document)).encode() if kind > 2 else draw(st.binary(max_size=300))
    coding = draw(st.sampled_from(["", "gzip", "deflate", "gzip, gzip", "br", "identity"]))
    if coding == "gzip":
        body = gzip.compress(body)
    elif coding == "deflate":
        body = zlib.compress(body)
    elif coding == "gzip, gzip":
        body = gzip.compress(gzip.compress(body))
    status = draw(st.sampled_from([200, 200, 200, 404, 500, 304]))
    return status, ({"Content-Encoding": coding} if coding else {}), body


def _resolve(host: str, port: int) -> list[str]:
    """A hermetic resolver: an IP literal is itself, a name is one public address."""
    literal = ":" in host or host.replace(".", "").isdigit()
    return [host] if literal else ["93.184.216.34"]


@budget(small=40)
@given(pages=st.lists(responses(), min_size=1, max_size=5))
def test_the_api_path_gives_only_typed_errors(
    pages: list[tuple[int, dict[str, str], bytes]],
) -> None:
    answers = iter(pages)

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.host in ("api.example.test",) or "X-Api-Key" not in request.headers
        status, headers, body = next(answers, (404, {}, b""))
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    fetcher = Fetcher(transport=httpx.MockTransport(handle), trust_env=False)
    with fetcher, mock.patch.object(fetch_module, "_resolve", _resolve), bounded():
        stories, errors = fetch_api(API, fetcher, environ={"FUZZ_KEY": "fuzz-key"})
    assert all(isinstance(e, IngestError) for e in errors)
    assert all(isinstance(s, RawStory) for s in stories)


# -- Kafka payloads: decode, then the stage that reads them ----------------------------------

_HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "NaN",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-03-10T14:30:00",  # naive
            "2026-02-30T00:00:00Z",
            "x" * 5000,
            "\ud800",
            "topic:\u200dFinancials",
        ]
    ),
    st.text(max_size=40),
    st.lists(st.text(max_size=8), max_size=5),
    st.dictionaries(st.text(max_size=8), st.floats(allow_nan=True), max_size=3),
)


def _field_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a decoded JSON record, nested records and lists included."""
    paths = [path] if path else []
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.extend(_field_paths(inner, (*path, key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            paths.extend(_field_paths(inner, (*path, index)))
    return paths


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


@st.composite
def mutated_payloads(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid record's JSON with a few fields set to hostile values or dropped, or raw bytes,
    a tombstone-like empty value, a deep nest, or a huge count."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "bytes", "nest"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "nest":
        depth = draw(st.integers(10, 100_000))
        return b"[" * depth + b"]" * depth
    record = json.loads(valid)
    paths = _field_paths(record)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        try:
            if draw(st.booleans()):
                _set(record, path, draw(_HOSTILE_VALUES))
            else:
                parent = record
                for step in path[:-1]:
                    parent = parent[step]
                del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the path's parent
    return json.dumps(record, allow_nan=True).encode("utf-8", "surrogatepass")


def _stage_payloads() -> dict[str, bytes]:
    from support.records import alert, keyed_point, scored_item, window_stat

    from finsent.core.records import encode

    return {
        "router": encode(scored_item()),
        "aggregator": encode(keyed_point("topic:Financials")),
        "alerter": encode(window_stat(count=20, neg_share=0.5)),
        "notifier": encode(alert()),
    }


STAGE_PAYLOADS = _stage_payloads()


@pytest.mark.parametrize("stage_name", sorted(STAGE_PAYLOADS))
def test_a_stage_reads_any_payload_as_a_record_or_a_dead_letter(
    stage_name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every payload is decoded by the runner's typed boundary; what passes goes through the
    stage's logic. Each input either gives output or becomes a dead letter, the run reaches
    the end of its input, and nothing escapes."""
    from support import stage_logic

    from finsent.core.stages import stage
    from finsent.runtime.store import Store
    from finsent.runtime.testing import run_logic

    valid = STAGE_PAYLOADS[stage_name]

    @budget(small=30)
    @given(payloads=st.lists(mutated_payloads(valid), min_size=1, max_size=4))
    def check(payloads: list[bytes]) -> None:
        folder = tmp_path_factory.mktemp(stage_name)
        settings = stage_logic.isolated_settings(folder, windows=("15m",))
        store = Store(settings.database_url)
        try:
            make = getattr(stage_logic, stage_name)
            logic = make(settings, store) if stage_name != "notifier" else make(settings, store, {})
            records = [valid, *payloads]  # one good record first: the stage has state to lose
            with bounded():
                run = run_logic(logic, records, store, lambda: NOW, stage=stage_name)
            assert run.offsets == {(stage(stage_name).source, 0): len(records)}
            dead = {letter.offset for letter in run.dead}
            assert 0 not in dead  # the valid record went through
        finally:
            store.close()

    check()
