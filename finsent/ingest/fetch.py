"""HTTP fetching for feeds and APIs: one shared client, hard limits, conditional GET.

Every failure becomes an ``IngestError`` with a short, precise reason ("HTTP 503", "timeout
after 10 s", "connection reset", "too many redirects", "response larger than N bytes"); nothing
else escapes ``Fetcher.get``. Reasons never contain the URL, so an API key sent as a query
parameter cannot leak into logs or dead letters.

Hostile servers: the body is decompressed here, in bounded steps, so the size cap counts
decoded bytes before they are held (a gzip bomb stops at the cap), and stacked or unknown
content codings are refused. Loopback, link-local, private and other non-public addresses are
refused on every hop (redirects included) unless the caller opts in; the address checked is
the one connected to, so a second DNS answer cannot swap it. A request that carries a key can
be kept to its origin: a redirect elsewhere is refused rather than followed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.request import getproxies

import httpx

from finsent.ingest.raw import IngestError

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "finsent/0.1 (financial news sentiment monitor)"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
MAX_STATE_ENTRIES = 2000  # the validator state file stays small
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
# The codings this module decodes itself (bounded); anything else, or several stacked, is
# refused, so the server is only ever offered these.
ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # the final URL, after redirects
    status: int
    body: bytes  # empty when not modified
    content_type: str | None
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    elapsed_s: float = 0.0


def _is_reset(exc: BaseException) -> bool:
    """Whether an httpx error was caused by the peer resetting or dropping the connection."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionResetError | BrokenPipeError):
            return True
        if isinstance(cur, OSError) and cur.errno in (errno.ECONNRESET, errno.EPIPE):
            return True
        text = str(cur).lower()
        if "reset" in text or "disconnected" in text or "closed" in text:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _is_refused(exc: BaseException) -> bool:
    cur: BaseException | None = exc
    for _ in range(8):
        if cur is None:
            return False
        if isinstance(cur, ConnectionRefusedError) or "refused" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class AddressRefused(Exception):
    """A hop's host is (or resolves to) an address that is not public."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable: not loopback, link-local (cloud metadata),
    private, shared, multicast, reserved or unspecified, also when written IPv4-in-IPv6."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses to connect to for ``host``; AddressRefused when any one is not public
    (a name that mixes public and private answers is refused whole)."""
    shown = host if len(host) <= 80 else host[:77] + "..."
    addresses = _resolve(host.strip("[]"), port)
    for address in addresses:
        if not is_public_address(address):
            named = address if shown == address else f"{shown} ({address})"
            raise AddressRefused(
                f"address refused: {named} is not a public address "
                "(a source on a private network needs allow_private_network)"
            )
    return addresses


class _PublicOnlyBackend:
    """An httpcore network backend that connects only to public addresses, and to exactly the
    ones it checked (so a second DNS answer cannot swap in a private one)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner  # httpcore's own synchronous backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        try:
            addresses = public_addresses(host, port)
        except (OSError, ValueError):
            # No DNS answer: let httpcore's own connect fail, with its usual error.
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except Exception as exc:  # httpcore's ConnectError/ConnectTimeout: try the next
                failure = exc
        raise failure or AddressRefused("address refused: no address")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise AddressRefused("address refused: a Unix socket is not a public address")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _public_only_transport(trust_env: bool) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=trust_env)
    # httpx offers no way to pass a network backend: rebuild its pool, same settings, ours.
    pool: Any = transport._pool
    limits = httpx.Limits()
    transport._pool = type(pool)(
        ssl_context=pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_PublicOnlyBackend(pool._network_backend),
    )
    return transport


def _check_hop(request: httpx.Request) -> None:
    """Every hop's host, where the connection is not ours to pin (a proxy, a test transport)."""
    # No answer here (OSError, or a name the resolver cannot encode): the connection itself
    # fails, or the proxy resolves it.
    with contextlib.suppress(OSError, ValueError):
        public_addresses(request.url.host, request.url.port or 443)


def origin(url: str | httpx.URL) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, the default port filled in; None when it is not one."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host, port


def same_origin(url: str | httpx.URL, base: str | httpx.URL) -> bool:
    """Whether ``url`` is on ``base``'s origin, or its upgrade from http to https."""
    target, home = origin(url), origin(base)
    if target is None or home is None:
        return False
    if target == home:
        return True
    return home[0] == "http" and target == ("https", home[1], 443) and home[2] == 80


class Fetcher:
    """A shared `httpx.Client` with size, redirect and time limits and per-URL validators.

    Thread-safe: the poller's worker threads share one instance. `state_path` (optional) is a
    small JSON file that keeps ETag/Last-Modified across restarts. `allow_private` lets every
    request reach non-public addresses (a fetcher for loopback tests); otherwise only the
    requests that ask for it (`get(..., allow_private=True)`) may.
    """

    def __init__(
        self,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        total_timeout: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        state_path: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
        allow_private: bool = False,
    ) -> None:
        if max_redirects > DEFAULT_MAX_REDIRECTS:
            raise ValueError(f"max_redirects is capped at {DEFAULT_MAX_REDIRECTS}")
        self.user_agent = user_agent
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # A server trickling bytes never trips the per-read timeout; this bounds the whole body.
        self.total_timeout = total_timeout if total_timeout is not None else 3 * read_timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.state_path = Path(state_path) if state_path else None
        self._lock = threading.Lock()
        self._validators: dict[str, dict[str, str]] = self._load_state()
        self.allow_private = allow_private
        self._transport = transport
        self._trust_env = trust_env
        self._client = self._make_client(public_only=not allow_private)
        self._open_client: httpx.Client | None = None  # made for the first source that opts in

    def _make_client(self, *, public_only: bool) -> httpx.Client:
        transport = self._transport
        hooks: dict[str, list[Any]] = {}
        if public_only:
            if transport is None and not (self._trust_env and getproxies()):
                transport = _public_only_transport(self._trust_env)
            else:  # not our connection to pin: check each hop's address before it is sent
                hooks["request"] = [_check_hop]
        return httpx.Client(
            headers={
                "User-Agent": self.user_agent,
                "Accept": FEED_ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            timeout=httpx.Timeout(
                connect=self.connect_timeout,
                read=self.read_timeout,
                write=self.read_timeout,
                pool=self.read_timeout,
            ),
            follow_redirects=False,  # followed in `get`, hop by hop
            transport=transport,
            trust_env=self._trust_env,
            event_hooks=hooks,
        )

    def _client_for(self, allow_private: bool) -> httpx.Client:
        if self.allow_private or not allow_private:
            return self._client
        with self._lock:
            if self._open_client is None:
                self._open_client = self._make_client(public_only=False)
            return self._open_client

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()
        if self._open_client is not None:
            self._open_client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- conditional-GET state -------------------------------------------------------------

    def validators(self, url: str) -> dict[str, str]:
        """The remembered {"etag", "last_modified"} for a URL (empty if none)."""
        with self._lock:
            return dict(self._validators.get(url, {}))

    def forget(self, url: str) -> None:
        """Drop a URL's validators, so the next fetch gets the full body again."""
        with self._lock:
            if self._validators.pop(url, None) is not None:
                self._save_state_locked()

    def _remember(self, url: str, etag: str | None, last_modified: str | None) -> None:
        entry = {k: v for k, v in (("etag", etag), ("last_modified", last_modified)) if v}
        with self._lock:
            if self._validators.get(url) == (entry or None):
                return
            if entry:
                self._validators.pop(url, None)  # re-insert: newest last, oldest trimmed first
                self._validators[url] = entry
                while len(self._validators) > MAX_STATE_ENTRIES:
                    self._validators.pop(next(iter(self._validators)))
            elif self._validators.pop(url, None) is None:
                return
            self._save_state_locked()

    def _load_state(self) -> dict[str, dict[str, str]]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable fetch state %s: %s", self.state_path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        state: dict[str, dict[str, str]] = {}
        for url, entry in data.items():
            if isinstance(url, str) and isinstance(entry, dict):
                clean = {
                    k: v
                    for k, v in entry.items()
                    if k in ("etag", "last_modified") and isinstance(v, str)
                }
                if clean:
                    state[url] = clean
        return state

    def _save_state_locked(self) -> None:
        if self.state_path is None:
            return
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            tmp.write_text(json.dumps(self._validators, indent=0), encoding="utf-8")
            os.replace(tmp, self.state_path)  # atomic: a crash never leaves half a file
        except OSError as exc:
            log.warning("cannot save fetch state %s: %s", self.state_path, exc)

    # -- fetching --------------------------------------------------------------------------

    def get(
        self,
        url: str,
        *,
        source: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        conditional: bool = True,
        allow_private: bool = False,
        keep_origin: bool = False,
    ) -> FetchResult:
        """GET a URL (`params` are merged into its query). Raises only IngestError.

        With `conditional`, sends the remembered validators and returns `not_modified=True`
        (no body) on HTTP 304. `allow_private`: this source may be on a private network.
        `keep_origin`: the request carries a key, so a redirect to another origin is refused.

        Conditional state is keyed by `url` alone: don't combine it with secret `params`.
        """
        request_headers = dict(headers or {})
        if conditional:
            remembered = self.validators(url)
            if "etag" in remembered:
                request_headers["If-None-Match"] = remembered["etag"]
            if "last_modified" in remembered:
                request_headers["If-Modified-Since"] = remembered["last_modified"]
        started = time.monotonic()
        try:
            # Merge, not replace: httpx's params= drops a query already in the URL (next links).
            target = httpx.URL(url).copy_merge_params(dict(params)) if params else url
            client = self._client_for(allow_private)
            request = client.build_request("GET", target, headers=request_headers)
            first = request.url
            for _hop in range(self.max_redirects + 1):
                response = client.send(request, stream=True)
                try:
                    redirect = response.next_request
                    if redirect is None:
                        return self._read(url, source, response, started, conditional)
                    if keep_origin and not same_origin(redirect.url, first):
                        raise IngestError(
                            source, "redirect to another origin refused (the request has a key)"
                        )
                finally:
                    response.close()
                request = redirect
            raise IngestError(source, f"too many redirects (more than {self.max_redirects})")
        except IngestError:
            raise
        except AddressRefused as exc:
            raise IngestError(source, exc.reason) from exc
        except httpx.ConnectTimeout as exc:
            raise IngestError(source, f"connect timeout after {self.connect_timeout:g} s") from exc
        except httpx.TimeoutException as exc:
            raise IngestError(source, f"timeout after {self.read_timeout:g} s") from exc
        except httpx.ConnectError as exc:
            if _is_refused(exc):
                raise IngestError(source, "connection refused") from exc
            raise IngestError(source, f"connection failed: {exc}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if _is_reset(exc):
                raise IngestError(source, "connection reset") from exc
            raise IngestError(source, f"network error: {type(exc).__name__}: {exc}") from exc
        except (httpx.DecodingError, zlib.error) as exc:
            raise IngestError(source, f"bad content encoding: {exc}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise IngestError(source, f"invalid URL: {exc}") from exc
        except httpx.HTTPError as exc:
            raise IngestError(source, f"network error: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:  # e.g. a socket error raised outside httpx's wrappers
            if _is_reset(exc):
                raise IngestError(source, "connection reset") from exc
            raise IngestError(source, f"network error: {exc}") from exc

    def _read(
        self,
        url: str,
        source: str,
        response: httpx.Response,
        started: float,
        conditional: bool,
    ) -> FetchResult:
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        content_type = response.headers.get("Content-Type")
        if response.status_code == 304:
            if conditional and (etag or last_modified):
                old = self.validators(url)
                self._remember(
                    url, etag or old.get("etag"), last_modified or old.get("last_modified")
                )
            return FetchResult(
                url=str(response.url),
                status=304,
                body=b"",
                content_type=content_type,
                not_modified=True,
                etag=etag,
                last_modified=last_modified,
                elapsed_s=time.monotonic() - started,
            )
        if response.status_code >= 300:
            # Keep a little of the error page for the dead letter; never the whole thing.
            excerpt = self._read_capped(source, response, started, cap=2048, strict=False)
            raise IngestError(source, f"HTTP {response.status_code}", excerpt)
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise IngestError(source, f"response larger than {self.max_bytes} bytes")
        body = self._read_capped(source, response, started, cap=self.max_bytes, strict=True)
        if conditional:
            self._remember(url, etag, last_modified)
        return FetchResult(
            url=str(response.url),
            status=response.status_code,
            body=body,
            content_type=content_type,
            etag=etag,
            last_modified=last_modified,
            elapsed_s=time.monotonic() - started,
        )

    def _read_capped(
        self, source: str, response: httpx.Response, started: float, *, cap: int, strict: bool
    ) -> bytes:
        """Stream and decode the body; past `cap` raise if `strict`, else truncate.

        Decompression never yields more than the room left under `cap` (plus one byte to tell
        "exactly full" from "over"), so a bomb costs at most `cap` bytes of memory."""
        if response.is_stream_consumed:  # a ready-made response (a test transport): decoded
            inflate, pieces = None, iter([response.content])
        else:
            inflate, pieces = _inflater(source, response), response.iter_raw()
        chunks: list[bytes] = []
        size = 0
        for raw in pieces:
            chunk = inflate(raw, cap - size + 1) if inflate else raw
            size += len(chunk)
            if size > cap:
                if strict:
                    raise IngestError(
                        source, f"response larger than {cap} bytes", chunks[0] if chunks else b""
                    )
                chunks.append(chunk[: cap - (size - len(chunk))])
                break
            chunks.append(chunk)
            if time.monotonic() - started > self.total_timeout:
                raise IngestError(source, f"timeout after {self.total_timeout:g} s")
        return b"".join(chunks)


class _Inflater:
    """Decodes one gzip or deflate body a bounded slice at a time."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._decoder = zlib.decompressobj(_WBITS[coding])
        self._started = False

    def __call__(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` (>= 1) decoded bytes of ``data``."""
        try:
            out = self._decoder.decompress(data, limit)
        except zlib.error:
            # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
            if self.coding != "deflate" or self._started:
                raise
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._decoder.decompress(data, limit)
        self._started = True
        return out


def _inflater(source: str, response: httpx.Response) -> _Inflater | None:
    """A bounded decoder for the response's content coding, or None for identity.

    Refuses stacked codings ("gzip, gzip" multiplies a bomb) and codings we do not decode."""
    codings = [
        c.strip().lower()
        for c in response.headers.get_list("Content-Encoding", split_commas=True)
        if c.strip() and c.strip().lower() != "identity"
    ]
    if not codings:
        return None
    named = ", ".join(codings)[:60]
    if len(codings) > 1:
        raise IngestError(source, f"bad content encoding: stacked codings refused ({named})")
    if codings[0] not in _WBITS:
        raise IngestError(source, f"bad content encoding: unsupported coding ({named})")
    return _Inflater(codings[0])
