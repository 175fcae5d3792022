"""A real HTTP server on loopback for ingest tests: configurable routes, good and hostile.

`FeedServer` runs the stdlib `ThreadingHTTPServer` on a free port in a daemon thread. Each path
maps to a `Route`: a body with status and headers (optionally ETag/Last-Modified with 304
support), a delay (timeouts), an abrupt connection reset, or a custom handler. Every request is
recorded so tests can check what the client sent and how often.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
FIXTURES_DIR = FIXTURES_DIR / "rss_feed_fixtures_financial"
FIXTURE_NAMES = ("cnbc", "seekingalpha", "nytimes", "google", "bloomberg")
RSS_TYPE = "application/rss+xml; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


def fixture_bytes(name: str) -> bytes:
    """A real feed snapshot by name ("cnbc"); skips the test when the folder is absent."""
    path = FIXTURES_DIR / f"{name}.xml"
    if not path.is_file():
        pytest.skip(f"feed fixtures not found at {FIXTURES_DIR} (the shared datasets folder)")
    return path.read_bytes()


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = RSS_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = False  # send ETag/Last-Modified and answer 304 when they match
    last_modified: str = field(default_factory=lambda: formatdate(usegmt=True))
    delay: float = 0.0  # seconds before the status line (a slow server)
    reset: bool = False  # close the socket with RST instead of answering
    send_length: bool = True  # False: no Content-Length, close-delimited body
    handler: Callable[[Handler, RecordedRequest], None] | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # keep test output clean

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        parts = urlsplit(self.path)
        request = RecordedRequest(
            path=parts.path, query=parse_qs(parts.query), headers=dict(self.headers.items())
        )
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(request)
            route = owner.routes.get(parts.path)
        if route is None:
            self.respond(404, b"not found", "text/plain")
            return
        if route.delay and owner.stopping.wait(route.delay):
            return
        if route.reset:
            self.reset_connection()
            return
        if route.handler is not None:
            route.handler(self, request)
            return
        headers = dict(route.headers)
        if route.conditional:
            headers["ETag"] = route.etag
            headers["Last-Modified"] = route.last_modified
            if self._not_modified(route):
                self.respond(304, b"", None, headers)
                return
        self.respond(route.status, route.body, route.content_type, headers, route.send_length)

    def _not_modified(self, route: Route) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return route.etag in [tag.strip() for tag in if_none_match.split(",")]
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                return parsedate_to_datetime(since) >= parsedate_to_datetime(route.last_modified)
            except (TypeError, ValueError):
                return False
        return False

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
        send_length: bool = True,
    ) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if status != 304:
                if send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
            self.end_headers()
            if status != 304:
                view = memoryview(body)
                for start in range(0, len(body), 64 * 1024):
                    self.wfile.write(view[start : start + 64 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (size cap): expected

    def send_json(self, payload: object, status: int = 200) -> None:
        self.respond(status, json.dumps(payload).encode(), "application/json")

    def reset_connection(self) -> None:
        """Close abruptly: SO_LINGER 0 makes the kernel send RST instead of FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FeedServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # resets and aborted downloads are the point of several tests


class FeedServer:
    """`with FeedServer() as server: server.add("/x.xml", Route(...)); server.url("/x.xml")`."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, route: Route) -> str:
        with self.lock:
            self.routes[path] = route
        return self.url(path)

    def hits(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes slow routes
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- ready-made routes ---------------------------------------------------------------------


def fixture_route(name: str, conditional: bool = True) -> Route:
    content_type = XML_TYPE if name == "bloomberg" else RSS_TYPE
    return Route(body=fixture_bytes(name), content_type=content_type, conditional=conditional)


def rss(items: str, encoding_decl: str = "utf-8") -> bytes:
    """A small RSS 2.0 document around raw `<item>` XML (as bytes, so bad bytes survive)."""
    return (
        (
            f'<?xml version="1.0" encoding="{encoding_decl}"?>\n'
            '<rss version="2.0"><channel><title>Test feed</title>'
            "<link>http://example.test/</link><description>t</description>"
        ).encode()
        + items.encode("utf-8", "surrogateescape")
        + b"</channel></rss>"
    )


def item(title: str, link: str = "http://example.test/a", pub: str = "") -> str:
    pub = pub or "Mon, 09 Mar 2026 10:00:00 GMT"
    return f"<item><title>{title}</title><link>{link}</link><pubDate>{pub}</pubDate></item>"


def billion_laughs(levels: int = 10) -> bytes:
    """The classic bomb: 10 levels of 10× references expand to 10^levels "lol"s."""
    decls = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        decls.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(decls) + "\n]>\n"
        f'<rss version="2.0"><channel><title>x</title><item><title>&lol{levels - 1};</title>'
        "</item></channel></rss>"
    ).encode()


def xxe_payload(target: str = "file:///etc/passwd") -> bytes:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{target}">]>\n'
        '<rss version="2.0"><channel><title>x</title><item><title>&xxe;</title>'
        "<link>http://example.test/x</link></item></channel></rss>"
    ).encode()


def redirect_loop_handler(handler: Handler, request: RecordedRequest) -> None:
    handler.respond(302, b"", None, {"Location": request.path})


def paged_api_handler(
    pages: list[list[dict[str, object]]],
    *,
    key_header: str | None = None,
    key_param: str | None = None,
    expected_key: str = "",
) -> Callable[[Handler, RecordedRequest], None]:
    """A JSON API: `{"data": {"items": [...]}, "next": token}`; page chosen by ?cursor=."""

    def handle(handler: Handler, request: RecordedRequest) -> None:
        supplied = (
            handler.headers.get(key_header)
            if key_header
            else (request.query.get(key_param, [""])[0] if key_param else expected_key)
        )
        if supplied != expected_key:
            handler.send_json({"error": "bad key"}, status=401)
            return
        page = int(request.query.get("cursor", ["1"])[0])
        body: dict[str, object] = {"data": {"items": pages[page - 1]}}
        if page < len(pages):
            body["next"] = str(page + 1)
        handler.send_json(body)

    return handle
