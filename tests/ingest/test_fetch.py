"""The fetcher against hostile servers: bounded decompression, stacked codings, and the address
filter on every hop (loopback feed servers opt in; see tests/ingest/conftest.py)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest
from support.feed_server import FeedServer, Route

from finsent.ingest.fetch import Fetcher
from finsent.ingest.raw import IngestError

MB = 1024 * 1024


@pytest.fixture(scope="module")
def zeros_gzip() -> bytes:
    return gzip.compress(bytes(32 * MB), compresslevel=9)  # 32 MB in about 32 KB


def peak_bytes_of(call: object) -> tuple[int, BaseException | None]:
    """The peak of traced Python allocations while ``call()`` runs, and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    failure: BaseException | None = None
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        failure = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, failure


@pytest.fixture
def small_fetcher() -> Iterator[Fetcher]:
    with Fetcher(read_timeout=5.0, trust_env=False, max_bytes=MB, allow_private=True) as f:
        yield f


def test_a_gzip_bomb_costs_at_most_the_cap(
    server: FeedServer, small_fetcher: Fetcher, zeros_gzip: bytes
) -> None:
    url = server.add("/bomb", Route(body=zeros_gzip, headers={"Content-Encoding": "gzip"}))
    peak, failure = peak_bytes_of(lambda: small_fetcher.get(url, source="s"))
    assert isinstance(failure, IngestError)
    assert failure.reason == f"response larger than {MB} bytes"
    assert peak < 6 * MB  # the cap and a little, never the 32 MB the body inflates to


def test_stacked_codings_are_refused_before_decoding(
    server: FeedServer, small_fetcher: Fetcher, zeros_gzip: bytes
) -> None:
    body = gzip.compress(zeros_gzip)  # "gzip, gzip": a few hundred bytes on the wire
    url = server.add("/stacked", Route(body=body, headers={"Content-Encoding": "gzip, gzip"}))
    peak, failure = peak_bytes_of(lambda: small_fetcher.get(url, source="s"))
    assert isinstance(failure, IngestError)
    assert failure.reason == "bad content encoding: stacked codings refused (gzip, gzip)"
    assert peak < 6 * MB


def test_an_unknown_coding_is_refused(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.add("/br", Route(body=b"\x1b\x03", headers={"Content-Encoding": "br"}))
    with pytest.raises(IngestError, match=r"^s: bad content encoding: unsupported coding \(br\)"):
        fetcher.get(url, source="s")


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
    ids=["gzip", "zlib-deflate", "raw-deflate"],
)
def test_compressed_bodies_still_decode(
    coding: str, encode: object, server: FeedServer, fetcher: Fetcher
) -> None:
    body = b"<rss>" + b"news " * 10_000 + b"</rss>"
    url = server.add("/z", Route(body=encode(body), headers={"Content-Encoding": coding}))  # type: ignore[operator]
    assert fetcher.get(url, source="s").body == body


def test_loopback_is_refused_unless_the_source_opts_in(server: FeedServer) -> None:
    url = server.add("/feed.xml", Route(body=b"<rss/>"))
    with Fetcher(read_timeout=5.0, trust_env=False) as guarded:
        with pytest.raises(IngestError) as info:
            guarded.get(url, source="s")
        assert info.value.reason.startswith("address refused: 127.0.0.1 is not a public address")
        assert server.hits("/feed.xml") == []  # refused before connecting
        assert guarded.get(url, source="s", allow_private=True).body == b"<rss/>"


def test_a_name_that_resolves_to_loopback_is_refused(server: FeedServer) -> None:
    url = server.add("/feed.xml", Route(body=b"<rss/>")).replace("127.0.0.1", "localhost")
    guarded = Fetcher(read_timeout=5.0, trust_env=False)
    with guarded, pytest.raises(IngestError, match="address refused: localhost"):
        guarded.get(url, source="s")
    assert server.hits("/feed.xml") == []


def test_every_redirect_hop_is_checked() -> None:
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.host == "feeds.example.test":
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})
        return httpx.Response(200, content=b"instance credentials")

    transport = httpx.MockTransport(handle)
    guarded = Fetcher(transport=transport, trust_env=False)
    with guarded, pytest.raises(IngestError) as info:
        guarded.get("http://feeds.example.test/rss", source="s")
    assert info.value.reason.startswith("address refused: 169.254.169.254")
    assert asked == ["http://feeds.example.test/rss"]  # the metadata address never asked


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("2002:7f00:1::", False),  # 6to4 around loopback
        ("not an address", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    from finsent.ingest.fetch import is_public_address

    assert is_public_address(address) is public
