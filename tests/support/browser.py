"""Running the real dashboard and a real headless Chromium against it.

Shared by the browser tests (tests/dashboard/test_browser.py) and the dashboard benchmark
(bench/bench_dashboard.py), which load this file by path: ``tests`` is not a package.

The browser is the system Chromium (Debian's ``chromium``, see scripts/ensure_chromium.sh),
driven by Playwright through ``executable_path``; Playwright's own browser downloads are never
used, so nothing here needs more than the package registries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from finsent.app import launch
from finsent.app.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

# Streamlit marks its root element with the script's run state: "initial" before the first
# run, "running" while the script (or a fragment) runs, "notRunning" once it is idle.
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PLOTS = ".js-plotly-plot"
PLOT_MARKS = "g.trace, g.hm"  # what a drawn plotly chart holds: traces, or heatmap images
PAGES = ("overview", "heatmap", "alerts", "headlines", "tickers", "backtests")


def chromium_path() -> str | None:
    """The system Chromium, if there is one on PATH."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no chromium on PATH (run scripts/ensure_chromium.sh)"
    return None


def artifacts_dir() -> Path:
    """Where screenshots go: $FINSENT_TEST_ARTIFACTS (default test-artifacts, relative to the
    repository root), under dashboard/."""
    base = Path(os.environ.get("FINSENT_TEST_ARTIFACTS") or "test-artifacts")
    if not base.is_absolute():
        base = ROOT / base
    folder = base / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def finsent_command() -> list[str]:
    """``finsent`` run by this Python, as the tests run every stage."""
    return launch.finsent_command()


class Dashboard:
    """``finsent dashboard`` on a free loopback port, over the store at ``store_url``.

    ``finsent dashboard`` execs Streamlit, so ``pid`` is the Streamlit server's own process.
    """

    def __init__(
        self,
        store_url: str,
        workdir: Path,
        *,
        refresh_seconds: float = 2.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.store_url = store_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"dashboard-{self.port}.log"
        self.refresh_seconds = refresh_seconds
        self.extra_env = env or {}
        self.cwd = cwd or ROOT  # the folder `finsent dashboard` is started from
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, page: str = "") -> str:
        return f"{self.base_url}/{page.lstrip('/')}"

    def start(self, timeout: float = 90.0) -> Dashboard:
        env = {k: v for k, v in os.environ.items() if k != "FINSENT_CONFIG"}
        env.update(
            FINSENT_STORE_URL=self.store_url,
            FINSENT_DASHBOARD_REFRESH_SECONDS=f"{self.refresh_seconds:g}",
            FINSENT_METRICS_PORT="0",
            **self.extra_env,
        )
        cmd = [*finsent_command(), "dashboard", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url("_stcore/health"), timeout=2).text.strip() == "ok":
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the dashboard was not healthy after {timeout:.0f} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def launch_chromium(playwright: Any, *args: str) -> Any:
    """The system Chromium, headless (Playwright passes --no-sandbox, which root needs)."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        args=["--disable-dev-shm-usage", "--disable-gpu", *args],
    )


def wait_idle(page: Any, timeout_ms: float = 30_000) -> None:
    """Until the script run (or fragment run) in progress has finished."""
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc (psutil when it is installed)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def app_text(page: Any) -> str:
    """All text of the app, including the dataframes' accessible tables (the grid itself is a
    canvas, so its cells exist as text only there)."""
    return page.locator('[data-testid="stApp"]').text_content() or ""


def app_errors(page: Any) -> list[str]:
    """The tracebacks Streamlit shows in the page, if any."""
    return [e.text_content() or "" for e in page.locator('[data-testid="stException"]').all()]


def full_screenshot(page: Any, path: Path, max_height: int = 8000) -> Path:
    """A screenshot of the whole app. Streamlit scrolls its own main element, not the document,
    so a full-page shot is taken with the viewport made as tall as that element's content."""
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(document.documentElement.scrollHeight,
            ...Array.from(document.querySelectorAll(
                '[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main'
            )).map((e) => e.scrollHeight))"""
    )
    try:
        page.set_viewport_size(
            {"width": size["width"], "height": min(max(height, size["height"]), max_height)}
        )
        page.wait_for_timeout(300)  # let the layout settle at the new height
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path
