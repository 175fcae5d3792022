"""Pytest fixtures for the store's PostgreSQL tests: one throwaway server per session, a fresh
database per test. Registered from conftest.py with ``pytest_plugins``."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from finsent.app.ports import free_port
from support.postgres_local import LocalPostgres, find_bindir


def server_home() -> Path:
    """A new folder for a server's files; the caller removes it.

    Not under pytest's tmp dir: that is private to root, and as root the server runs as the
    `postgres` user. A short path also keeps the unix socket under its length limit."""
    home = Path(tempfile.mkdtemp(prefix="finsent-pg-"))
    home.chmod(0o755)
    return home


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL on a free loopback port, for the whole test session."""
    if find_bindir() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (run `bash scripts/ensure_postgres.sh`, "
            "or install the Debian postgresql package)"
        )
    home = server_home()
    server = LocalPostgres(home, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The SQLAlchemy URL of a new, empty database for this test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
