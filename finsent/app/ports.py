"""Loopback ports: whether something listens on one, and a free one to listen on.

The launchers (the local broker, the demo, the backtest) ask ``port_open`` before they bind, so
a busy port is one clear error instead of a child that dies later; tests and benchmarks take
``free_port`` for brokers and servers of their own.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on now (the kernel's pick).

    Free when asked, not reserved: another process may take it before the caller binds it,
    which on a test machine is rare enough to be worth the simplicity.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
