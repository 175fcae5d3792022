"""`finsent dashboard` started from a user's folder that holds alerts.py, dashboard.py, ...: the
Streamlit server imports our packages, not those files (it runs with -P, and the folder it puts
first on sys.path is our dashboard package's own)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest


def _load_support() -> Any:
    path = Path(__file__).with_name("browser_support.py")
    spec = importlib.util.spec_from_file_location("browser_support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("browser_support", module)
    spec.loader.exec_module(module)
    return module


bs = _load_support()

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_missing = bs.missing_browser_reason()
if _missing:
    pytest.skip(_missing, allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

LOOKALIKES = ("alerts", "model", "stream", "ingest", "dashboard")


def test_pages_render_when_started_beside_lookalike_modules(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    for name in LOOKALIKES:
        (user / f"{name}.py").write_text('raise SystemExit("shadowed")\n', encoding="utf-8")
    server = bs.Dashboard(
        f"sqlite:///{tmp_path / 'store.db'}", tmp_path, env={"FINSENT_CACHE_DIR": str(tmp_path)},
        cwd=user,
    )  # fmt: skip
    try:
        server.start()
        with sync_playwright() as playwright:
            browser = bs.launch_chromium(playwright)
            try:
                page = browser.new_page()
                for name in ("overview", "alerts"):  # the alerts page imports alerts.rules
                    page.goto(server.url(name))
                    bs.wait_idle(page, 30_000)
                    errors = bs.app_errors(page)
                    assert not errors, f"{name}: {errors}\n{server.log()}"
                    assert "shadowed" not in bs.app_text(page), server.log()
            finally:
                browser.close()
    finally:
        server.stop()
    assert "shadowed" not in server.log()
