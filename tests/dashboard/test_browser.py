"""The dashboard in a real browser: `finsent dashboard` serves a populated SQLite store, and the
system Chromium (headless, driven by Playwright) loads its pages.

Checks that the charts render, that a filter changes what is shown, that acknowledging an alert,
expiring a silence and correcting a headline persist, and that a headline carrying a script tag
stays text (in tables, marked-up lists and the correction form's picker).
Screenshots of every page go to $FINSENT_TEST_ARTIFACTS (default test-artifacts/) under
dashboard/.

Skips when Playwright or a chromium binary is missing (scripts/ensure_chromium.sh installs
Debian's chromium; Playwright never downloads a browser here).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support import browser as bs
from support.records import alert as make_alert
from support.records import headline, scored_item, window_stat
from support.stages import lookalike_folder

from finsent.alerts.silences import new_silence
from finsent.core.records import Alert, WindowStat
from finsent.runtime.store import Commit, Store, alerts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_missing = bs.missing_browser_reason()
if _missing:
    pytest.skip(_missing, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

XSS = "<script>alert('xss')</script><img src=x onerror=alert(1)>"
# Recent times, so that no page's look-back hides the data.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
W = timedelta(minutes=15)
N_WINDOWS = 8
TIMEOUT_MS = 20_000

# (title, topic, sentiment, score, source, ticker); the XSS headline is an ordinary story.
STORIES = [
    (XSS, "Earnings", "negative", -0.5, "wire", "ACME"),
    ("Acme beats estimates", "Markets", "positive", 0.6, "newswire", "ACME"),
    ("Globex cuts guidance", "Earnings", "negative", -0.7, "wire", "GLBX"),
    ("Initech holds steady", "Macro", "neutral", 0.0, "daily", "INTC"),
    ("Umbrella raises dividend", "Markets", "positive", 0.4, "daily", "UMB"),
]
FIRING_ID = "alert-earnings"
PAGES = (*bs.PAGES, "review", "models")


def _scored(n: int, title: str, topic: str, sentiment: str, score: float, source: str, ticker: str):
    return scored_item(
        id=f"item-{n}",
        source=source,
        title=title,
        published_at=T0 + n * timedelta(minutes=20),
        tickers=(ticker,),
        ticker_relevance={ticker: 1.0},
        topic=topic,
        sentiment=sentiment,
        score=score,
        top_tokens=("guidance", "estimates"),
    )


def _window(key: str, i: int, size: timedelta, neg: float) -> WindowStat:
    start = T0 + i * size
    return window_stat(
        key=key,
        window_start=start,
        window_end=start + size,
        count=10 + i,
        weighted_count=10.0 + i,
        mean_score=0.3 - 0.1 * i,
        neg_share=neg,
        pos_share=max(0.0, 0.8 - neg),
        weighted_neg_share=neg,
        top_headlines=(headline(id="item-0", title=XSS, score=-0.5, source="wire"),),
        emitted_at=start + size + timedelta(minutes=1),
    )


def _alert(alert_id: str, key: str, i: int, state: str) -> Alert:
    start = T0 + i * W
    return make_alert(
        id=alert_id,
        key=key,
        state=state,
        severity="critical",
        rule="neg_share_z",
        window_start=start,
        window_end=start + W,
        baseline_mean=0.2,
        baseline_std=0.1,
        zscore=6.0,
        count=12,
        headlines=(headline(id="item-0", title=XSS, score=-0.5, source="wire"),),
        updated_at=start,
        message=f"negative spike on {key}",
    )


def populate(url: str) -> None:
    scored = [_scored(n, *story) for n, story in enumerate(STORIES)]
    keys = ["overall"]
    keys += sorted({f"topic:{s[1]}" for s in STORIES})
    keys += sorted({f"ticker:{s[5]}" for s in STORIES})
    keys += sorted({f"source:{s[4]}" for s in STORIES})
    windows = [
        _window(key, i, W, 0.2 + 0.05 * i + 0.01 * k)
        for k, key in enumerate(keys)
        for i in range(N_WINDOWS)
    ]
    windows += [_window(key, i, timedelta(hours=1), 0.3) for key in keys for i in range(2)]
    events = [
        _alert(FIRING_ID, "topic:Earnings", N_WINDOWS - 1, "firing"),
        _alert("alert-markets", "topic:Markets", 2, "resolved"),
    ]
    Store(url).commit(Commit(stage="test", scored=scored, windows=windows, alerts=events))


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'store.db'}"
    populate(url)
    server = bs.Dashboard(url, tmp, refresh_seconds=2, env={"FINSENT_CACHE_DIR": str(tmp)})
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(dashboard: Any) -> Iterator[Any]:
    with sync_playwright() as playwright:
        chromium = bs.launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def dialogs() -> list[str]:
    return []


@pytest.fixture
def page(browser: Any, dashboard: Any, dialogs: list[str]) -> Iterator[Any]:
    """A fresh tab that records any JavaScript dialog (none may ever open)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    # expect() has its own 5 s default, too short for plotly's lazy load on a busy machine.
    expect.set_options(timeout=TIMEOUT_MS)

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    yield tab
    context.close()
    assert not dialogs, f"the page opened dialogs: {dialogs}\n{dashboard.log()}"


def open_page(page: Any, dashboard: Any, name: str) -> None:
    """Load one page of the app and wait until its script run has finished cleanly."""
    page.goto(dashboard.url(name))
    bs.wait_idle(page, TIMEOUT_MS)
    assert not bs.app_errors(page), f"{name}: {bs.app_errors(page)}\n{dashboard.log()}"


def screenshot(page: Any, name: str) -> Path:
    path = bs.full_screenshot(page, bs.artifacts_dir() / f"{name}.png")
    assert path.is_file() and path.stat().st_size > 0, path
    return path


def headline_rows(page: Any) -> list[dict[str, str]]:
    """The Headlines page's table, as its CSV download."""
    with page.expect_download() as download:
        page.locator(".st-key-hl_csv button").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def choose(page: Any, key: str, *values: str) -> None:
    """Make exactly ``values`` the choice of the multiselect with this key."""
    widget = page.locator(f".st-key-{key}")
    tags = widget.locator("[data-tag], [data-baseweb='tag']")
    for _ in range(20):  # start from no choice, whatever the default
        if not tags.count():
            break
        tags.first.locator("[aria-label^='Remove'], [role='presentation']").first.click()
        bs.wait_idle(page)
    field = widget.locator("input")
    for value in values:
        field.click()
        field.fill(value)
        page.get_by_role("option", name=value, exact=True).click()
    field.press("Escape")
    expect(tags).to_have_count(len(values))


def open_options(page: Any, key: str) -> None:
    """Open the option list of the selectbox with this key (a click focuses it; a key opens)."""
    combo = page.locator(f".st-key-{key}").get_by_role("combobox")
    combo.click()
    combo.press("ArrowDown")
    expect(combo).to_have_attribute("aria-expanded", "true")


def pick(page: Any, key: str, text: str) -> None:
    """Choose the option of the selectbox with this key whose label contains ``text``."""
    open_options(page, key)
    page.get_by_role("option").filter(has_text=text).first.click()
    bs.wait_idle(page)


def titles(rows: list[dict[str, str]]) -> set[str]:
    return {row.get("Title", row.get("title", "")) for row in rows}


def test_every_page_renders_and_is_captured(page: Any, dashboard: Any) -> None:
    for name in PAGES:
        open_page(page, dashboard, name)
        screenshot(page, name)
    assert set(PAGES) <= {p.stem for p in bs.artifacts_dir().glob("*.png")}


def test_overview_charts_render(page: Any, dashboard: Any) -> None:
    open_page(page, dashboard, "overview")
    plots = page.locator(bs.PLOTS)
    expect(plots.nth(2)).to_be_attached()  # plotly loads lazily, after the script run
    assert plots.count() >= 3
    # Each chart is drawn: an SVG with marks in it (a trace: lines or bars; or heatmap cells).
    for i in range(plots.count()):
        expect(plots.nth(i).locator("svg.main-svg").first).to_be_visible()
        expect(plots.nth(i).locator(bs.PLOT_MARKS).first).to_be_attached()
    text = bs.app_text(page)
    for label in ("Items scored", "Windows", "Firing alerts", "Last update (UTC)"):
        assert label in text
    metrics = page.locator('[data-testid="stMetricValue"]').all_text_contents()
    assert str(len(STORIES)) in metrics, metrics
    screenshot(page, "overview-charts")


def test_headline_filter_changes_what_is_shown(page: Any, dashboard: Any) -> None:
    open_page(page, dashboard, "headlines")
    before = headline_rows(page)
    assert titles(before) == {s[0] for s in STORIES}

    choose(page, "hl_sentiment", "positive")

    # Only the positive stories remain, in the table's text and in its download.
    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).not_to_contain_text("Globex cuts guidance", timeout=TIMEOUT_MS)
    expect(table).to_contain_text("Acme beats estimates")
    bs.wait_idle(page)
    after = headline_rows(page)
    positive = {s[0] for s in STORIES if s[2] == "positive"}
    assert titles(after) == positive
    assert len(after) == len(positive) < len(before)
    screenshot(page, "headlines-filtered")


def test_acknowledging_an_alert_persists(page: Any, dashboard: Any) -> None:
    open_page(page, dashboard, "alerts")
    page.locator(".st-key-ack_owner input").fill("dana")
    page.locator(".st-key-ack_comment input").fill("looking at bank exposure")
    page.get_by_role("button", name="Acknowledge", exact=True).click()

    store = Store(dashboard.store_url)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        [row] = store.query(alerts, alerts.c.id == FIRING_ID)
        if row["acked_by"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    store.close()
    assert (row["acked_by"], row["ack_comment"]) == ("dana", "looking at bank exposure")

    # A fresh load reads it back from the store.
    page.reload()
    bs.wait_idle(page, TIMEOUT_MS)
    expect(page.locator('[data-testid="stApp"]')).to_contain_text("dana")
    screenshot(page, "alerts-acknowledged")


def test_expiring_a_silence_persists(page: Any, dashboard: Any) -> None:
    made = new_silence(
        "ticker:*", "1h", severity=None, author="dana", comment="", now=datetime.now(UTC)
    )
    store = Store(dashboard.store_url)
    store.add_silence(made.to_row())
    open_page(page, dashboard, "alerts")
    # A button with a tooltip is drawn twice, once hidden: the visible one has the role.
    expire = page.locator(f".st-key-expire_{made.id}").get_by_role("button", name="Expire")
    expect(expire).to_be_visible()  # by the next refresh at the latest
    screenshot(page, "alerts-silences")
    expire.click()

    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while store.active_silences(datetime.now(UTC)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.active_silences(datetime.now(UTC)) == []
    store.close()
    expect(expire).to_have_count(0)


def test_correcting_a_headline_persists(page: Any, dashboard: Any) -> None:
    open_page(page, dashboard, "headlines")
    pick(page, "hl_fix_story", "Acme beats estimates")
    expect(page.locator(".st-key-hl_fix_story").get_by_role("combobox")).to_have_value(
        re.compile("Acme beats estimates")
    )
    pick(page, "hl_fix_sentiment", "negative")
    # Each field committed (Tab) and its rerun finished before the next: on a loaded machine a
    # rerun still running when the next field is typed into could drop that text.
    for key, text in (("hl_fix_by", "dana"), ("hl_fix_note", "the beat came from a one-off gain")):
        field = page.locator(f".st-key-{key} input")
        field.fill(text)
        field.press("Tab")
        bs.wait_idle(page, TIMEOUT_MS)
        expect(field).to_have_value(text)
    page.get_by_role("button", name="Save correction").click()

    store = Store(dashboard.store_url)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not (rows := store.label_history(["item-1"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    store.close()
    assert len(rows) == 1, f"no correction stored; the page says: {bs.app_text(page)[:2000]}"
    [row] = rows
    assert (row["sentiment"], row["topic"], row["by"], row["note"], row["origin"]) == (
        "negative",
        None,
        "dana",
        "the beat came from a one-off gain",
        "dashboard",
    )
    assert (row["predicted_sentiment"], row["text"]) == ("positive", "Acme beats estimates")
    # The page says so, and the story's labels now show under the picker.
    expect(page.get_by_text(re.compile("Corrected once; now negative"))).to_be_visible()
    screenshot(page, "headlines-corrected")


def test_a_script_tag_headline_is_shown_as_text(
    page: Any, dashboard: Any, dialogs: list[str]
) -> None:
    for name in ("overview", "headlines", "alerts", "review", "models"):
        open_page(page, dashboard, name)
        page.wait_for_timeout(2500)  # one auto-refresh later, too
        # Nothing the title carries became a DOM element.
        assert page.locator("img[src='x']").count() == 0, name
        scripts = page.locator("script").all_text_contents()
        assert not any("alert('xss')" in s for s in scripts), name
    # On the Headlines page the title is there, verbatim, as text: in the table, and in any
    # other view of it (expanders opened, since some views render escaped HTML).
    open_page(page, dashboard, "headlines")
    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).to_contain_text(XSS)
    assert XSS in titles(headline_rows(page))
    expanders = page.locator('[data-testid="stExpander"] summary')
    for i in range(expanders.count()):
        expanders.nth(i).click()
    if expanders.count():
        expect(page.get_by_text(XSS).locator("visible=true").first).to_be_visible()
    # The correction form's picker lists it as an option: text too.
    open_options(page, "hl_fix_story")
    option = page.get_by_role("option").filter(has_text="<script>alert('xss')</script>")
    expect(option.first).to_be_visible()
    assert XSS in option.first.inner_text()
    page.wait_for_timeout(500)
    assert page.locator("img[src='x']").count() == 0
    assert not any("alert('xss')" in s for s in page.locator("script").all_text_contents())
    screenshot(page, "headlines-xss")
    page.keyboard.press("Escape")
    assert not dialogs  # no alert() ran (the page fixture checks every test for this, too)


def test_pages_render_when_started_beside_lookalike_modules(tmp_path: Path, browser: Any) -> None:
    """Started from a user's folder that holds alerts.py, dashboard.py, ...: the Streamlit server
    imports our packages, not those files (it runs with -P, and the folder it puts first on
    sys.path is our dashboard package's own)."""
    user = lookalike_folder(tmp_path / "user")
    server = bs.Dashboard(
        f"sqlite:///{tmp_path / 'store.db'}", tmp_path, env={"FINSENT_CACHE_DIR": str(tmp_path)},
        cwd=user,
    )  # fmt: skip
    try:
        server.start()
        page = browser.new_page()
        try:
            for name in ("overview", "alerts"):  # the alerts page imports alerts.rules
                page.goto(server.url(name))
                bs.wait_idle(page, 30_000)
                errors = bs.app_errors(page)
                assert not errors, f"{name}: {errors}\n{server.log()}"
                assert "shadowed" not in bs.app_text(page), server.log()
        finally:
            page.close()
    finally:
        server.stop()
    assert "shadowed" not in server.log()


def test_an_alert_links_to_the_headlines_of_its_window(tmp_path: Path, browser: Any) -> None:
    """On the Alerts page the picked alert links to the Headlines page, which shows that
    series' stories of that window alone (its own server and store, shown in Tokyo time)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    start = T0 + 4 * W
    stories = [  # (title, topic, published at)
        ("Inside the alert window", "Earnings", start + timedelta(minutes=5)),
        ("Another topic, same time", "Markets", start + timedelta(minutes=6)),
        ("The same topic, earlier", "Earnings", T0),
    ]
    inside = [
        scored_item(
            id=f"linked-{n}",
            source="wire",
            title=title,
            published_at=at,
            tickers=("ACME",),
            topic=topic,
            sentiment="negative",
            score=-0.5,
        )
        for n, (title, topic, at) in enumerate(stories)
    ]
    windows = [_window("topic:Earnings", i, W, 0.2 + 0.1 * i) for i in range(6)]
    alert = _alert("alert-linked", "topic:Earnings", 4, "firing")
    Store(url).commit(Commit(stage="test", scored=inside, windows=windows, alerts=[alert]))
    server = bs.Dashboard(
        url,
        tmp_path,
        env={"FINSENT_CACHE_DIR": str(tmp_path), "FINSENT_DASHBOARD_TZ": "Asia/Tokyo"},
    )
    try:
        server.start()
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        try:
            open_page(page, server, "alerts")
            link = page.get_by_role("link", name="All headlines of this window")
            expect(link).to_be_visible()
            link.click()
            page.wait_for_url("**/headlines?series=topic*")
            bs.wait_idle(page, TIMEOUT_MS)
            assert not bs.app_errors(page), server.log()

            assert "from=" in page.url and "to=" in page.url
            local_start = start.astimezone(ZoneInfo("Asia/Tokyo"))
            expect(page.locator('[data-testid="stAlert"]').first).to_contain_text(
                f"topic:Earnings published from {local_start:%Y-%m-%d %H:%M}"
            )
            table = page.locator(".st-key-hl_table")
            expect(table).to_have_count(1)  # a rerun's stale table has gone
            expect(table).to_contain_text("Inside the alert window")
            expect(table).not_to_contain_text("Another topic, same time")
            expect(table).not_to_contain_text("The same topic, earlier")
            rows = headline_rows(page)  # the CSV: the same filter, in UTC
            assert titles(rows) == {"Inside the alert window"}
            published = (start + timedelta(minutes=5)).replace(tzinfo=None)
            assert rows[0]["Time (UTC)"] == str(published)
            screenshot(page, "alert-linked-headlines")

            # "Show all headlines" drops the link's filter.
            page.get_by_role("link", name="Show all headlines").click()
            bs.wait_idle(page, TIMEOUT_MS)
            # While Streamlit reruns the page, the old table may still be there beside the new.
            unfiltered = page.locator(".st-key-hl_table", has_text="The same topic, earlier")
            expect(unfiltered.first).to_be_visible()
        finally:
            page.close()
    finally:
        server.stop()
