"""Fixtures of the notify tests: a store file per test, and one TLS certificate per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.notify_loopback import CertFiles, make_cert

from finsent.runtime.store import Store


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(store_path: str) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("tls"))
