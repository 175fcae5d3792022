"""Loopback ports: what listens, and a free one."""

from __future__ import annotations

import socket

from finsent.app.ports import LOOPBACK, free_port, port_open


def test_a_free_port_can_be_bound_and_is_open_once_listened_on() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_open(LOOPBACK, port)
    with socket.socket() as server:
        server.bind((LOOPBACK, port))
        server.listen()
        assert port_open(LOOPBACK, port)
    assert not port_open(LOOPBACK, port)


def test_nothing_listening_is_closed_without_waiting_long() -> None:
    assert not port_open(LOOPBACK, free_port(), timeout_s=0.1)
