"""HTTP fetching for feeds and APIs: one shared client, hard limits, conditional GET.

Every failure becomes an ``IngestError`` with a short, precise reason ("HTTP 503", "timeout
after 10 s", "connection reset", "too many redirects", "response larger than N bytes"); nothing
else escapes ``Fetcher.get``. Reasons never contain the URL, so an API key sent as a query
parameter cannot leak into logs or dead letters.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

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


class Fetcher:
    """A shared `httpx.Client` with size, redirect and time limits and per-URL validators.

    Thread-safe: the poller's worker threads share one instance. `state_path` (optional) is a
    small JSON file that keeps ETag/Last-Modified across restarts.
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
        self._client = httpx.Client(
            headers={"User-Agent": user_agent, "Accept": FEED_ACCEPT},
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout
            ),
            follow_redirects=True,
            max_redirects=max_redirects,
            transport=transport,
            trust_env=trust_env,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

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
    ) -> FetchResult:
        """GET a URL (`params` are merged into its query). Raises only IngestError.

        With `conditional`, sends the remembered validators and returns `not_modified=True`
        (no body) on HTTP 304.

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
            with self._client.stream("GET", target, headers=request_headers) as response:
                return self._read(url, source, response, started, conditional)
        except IngestError:
            raise
        except httpx.TooManyRedirects as exc:
            raise IngestError(
                source, f"too many redirects (more than {self.max_redirects})"
            ) from exc
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
        except httpx.DecodingError as exc:
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
        """Stream the (decoded) body; past `cap` raise if `strict`, else truncate."""
        chunks: list[bytes] = []
        size = 0
        # iter_bytes yields decompressed bytes, so the cap also stops gzip bombs.
        for chunk in response.iter_bytes():
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
