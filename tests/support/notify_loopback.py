"""Real loopback servers for the notifier tests.

- ``WebhookServer``: the stdlib ``ThreadingHTTPServer`` on a free 127.0.0.1 port in a daemon
  thread, answering each POST from a script of ``Reply``s (then a default), and recording what
  it received and what it answered: a stand-in for a Slack incoming webhook.
- ``SmtpServer``: an aiosmtpd ``Controller`` with STARTTLS or implicit TLS, AUTH LOGIN/PLAIN
  against one username and password, and scripted RCPT/DATA replies; it keeps every accepted
  message, parsed.
- ``make_cert``: a throwaway self-signed certificate for 127.0.0.1 (``cryptography`` when
  installed, else the ``openssl`` CLI).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from finsent.app.ports import free_port

# -- HTTP webhook ---------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # hold the answer back: client timeouts


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the server answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """Answers POSTs with ``replies`` in order, then ``default`` forever."""

    def __init__(self, replies: list[Reply] | None = None, default: Reply | None = None) -> None:
        self._replies = list(replies or [])
        self._default = default or Reply()
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.arrived: list[tuple[str, bytes]] = []  # (path, body) as read, before any delay
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def accepted(self) -> list[Received]:
        """Requests answered with a 2xx: what a real webhook would have posted."""
        return [r for r in self.received if 200 <= r.status < 300]

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.pop(0) if self._replies else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    owner.arrived.append((self.path, body))
                reply = owner._next_reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                with owner._lock:
                    owner.received.append(
                        Received(self.path, dict(self.headers.items()), body, reply.status)
                    )
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the stdlib would print the request path (the webhook secret) to stderr

        return Handler

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# -- TLS certificate ------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts this certificate only, with full verification (hostname 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_cert(folder: Path) -> CertFiles:
    """A one-day self-signed certificate for 127.0.0.1 and localhost."""
    files = CertFiles(folder / "cert.pem", folder / "key.pem")
    try:
        _cert_with_cryptography(files)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("needs the cryptography package or the openssl CLI for a test cert")
        subprocess.run(
            [
                openssl, "req", "-x509", "-nodes", "-days", "1",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", str(files.key), "-out", str(files.cert),
                "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return files


def _cert_with_cryptography(files: CertFiles) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# -- SMTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool  # the session ran over TLS (STARTTLS or implicit)
    authenticated: bool


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        reply = self.owner._pop(self.owner.rcpt_replies)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.owner.data_calls += 1
        reply = self.owner._pop(self.owner.data_replies)
        if reply:
            return reply
        content = envelope.original_content or b""
        message = BytesParser(policy=default_policy).parsebytes(content)
        assert isinstance(message, EmailMessage)
        self.owner.messages.append(
            Delivered(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free loopback port. ``mode``: "starttls" (TLS required before MAIL and
    AUTH), "ssl" (implicit TLS), or "none". With a username, AUTH is required."""

    def __init__(
        self,
        *,
        mode: Literal["starttls", "ssl", "none"],
        cert: CertFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        rcpt_replies: list[str] | None = None,
        data_replies: list[str] | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.rcpt_replies = list(rcpt_replies or [])
        self.data_replies = list(data_replies or [])
        self.messages: list[Delivered] = []
        self.data_calls = 0
        self.auth_attempts: list[tuple[str, bool]] = []  # (mechanism, success)
        self._lock = threading.Lock()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if mode == "starttls":
            assert cert is not None
            kwargs.update(tls_context=cert.server_context(), require_starttls=True)
        elif mode == "ssl":
            assert cert is not None
            # aiosmtpd counts only STARTTLS as TLS for AUTH; this transport is TLS throughout.
            kwargs.update(ssl_context=cert.server_context(), auth_require_tls=False)
        if username is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )

    def _pop(self, replies: list[str]) -> str | None:
        with self._lock:
            return replies.pop(0) if replies else None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.username is not None
            and self.password is not None
            and auth_data.login == self.username.encode()
            and auth_data.password == self.password.encode()
        )
        self.auth_attempts.append((mechanism, ok))
        # handled=False: aiosmtpd itself answers 535 on a failure (True would mean we had).
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
