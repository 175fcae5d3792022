from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from support.feed_server import (
    FeedServer,
    Route,
    billion_laughs,
    fixture_route,
    item,
    redirect_loop_handler,
    rss,
    xxe_payload,
)

import finsent.ingest.poller as poller_module
from finsent.app.ports import free_port
from finsent.core.settings import Settings
from finsent.core.watchlist import WatchedCompany, Watchlist
from finsent.ingest.fetch import Fetcher
from finsent.ingest.poller import FeedPoller, PollerConfig, reason_kind
from finsent.ingest.raw import IngestError, RawStory
from finsent.ingest.sources import Source

TEN_MB = 10 * 1024 * 1024
NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Results:
    """Collects on_result calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[RawStory], list[IngestError]]] = []
        self.event = threading.Event()

    def __call__(self, name: str, stories: list[RawStory], errors: list[IngestError]) -> None:
        self.calls.append((name, stories, errors))
        self.event.set()


@pytest.fixture
def make_fetcher() -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(**options: object) -> Fetcher:
        options = {"read_timeout": 5.0, "trust_env": False, "allow_private": True, **options}
        fetcher = Fetcher(**options)  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def feed_source(url: str, name: str = "feed", **extra: object) -> Source:
    return Source(name=name, url=url, kind="rss", **extra)  # type: ignore[arg-type]


# -- Fetcher ---------------------------------------------------------------------------------


def test_fetch_sends_user_agent_and_follows_a_few_redirects(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    server.add("/final.xml", fixture_route("cnbc", conditional=False))
    server.add("/hop2", Route(status=301, headers={"Location": "/final.xml"}))
    url = server.add("/hop1", Route(status=302, headers={"Location": "/hop2"}))
    result = make_fetcher(user_agent="finsent-test/1.0").get(url, source="s")
    assert result.status == 200 and result.url.endswith("/final.xml") and len(result.body) > 1000
    assert server.hits("/hop1")[0].headers["User-Agent"] == "finsent-test/1.0"


def test_conditional_get_and_state_file(
    server: FeedServer, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    url = server.add("/cnbc.xml", fixture_route("cnbc"))
    state = tmp_path / "state" / "validators.json"
    first = make_fetcher(state_path=state).get(url, source="s")
    assert not first.not_modified and first.etag and first.last_modified
    assert state.exists() and url in state.read_text()

    # A new Fetcher (a restart) reads the state file and gets a 304 with no body.
    second = make_fetcher(state_path=state).get(url, source="s")
    assert second.not_modified and second.status == 304 and second.body == b""
    assert server.hits("/cnbc.xml")[1].headers["If-None-Match"] == first.etag


def test_corrupt_state_file_is_ignored(
    server: FeedServer, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    state = tmp_path / "validators.json"
    state.write_text("{not json")
    url = server.add("/cnbc.xml", fixture_route("cnbc"))
    assert not make_fetcher(state_path=state).get(url, source="s").not_modified


def test_last_modified_alone_gives_304(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/f.xml", fixture_route("nytimes"))
    fetcher = make_fetcher()
    first = fetcher.get(url, source="s")
    fetcher._validators[url].pop("etag")  # as if the server sent only Last-Modified
    assert fetcher.get(url, source="s").not_modified
    assert server.hits("/f.xml")[1].headers["If-Modified-Since"] == first.last_modified


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_errors(status: int, server: FeedServer, make_fetcher: Callable[..., Fetcher]) -> None:
    url = server.add("/err", Route(status=status, body=b"error page " * 1000))
    with pytest.raises(IngestError) as info:
        make_fetcher().get(url, source="s")
    assert info.value.reason == f"HTTP {status}" and info.value.source == "s"
    assert info.value.raw.startswith(b"error page") and len(info.value.raw) <= 2048


def test_timeout(server: FeedServer, make_fetcher: Callable[..., Fetcher]) -> None:
    url = server.add("/slow", Route(body=rss(item("late")), delay=5.0))
    started = time.monotonic()
    with pytest.raises(IngestError, match=r"timeout after 0.3 s"):
        make_fetcher(read_timeout=0.3).get(url, source="s")
    assert time.monotonic() - started < 3


def test_connection_reset(server: FeedServer, make_fetcher: Callable[..., Fetcher]) -> None:
    url = server.add("/reset", Route(reset=True))
    with pytest.raises(IngestError) as info:
        make_fetcher().get(url, source="s")
    assert info.value.reason == "connection reset"


def test_connection_refused(make_fetcher: Callable[..., Fetcher]) -> None:
    with pytest.raises(IngestError) as info:
        make_fetcher().get(f"http://127.0.0.1:{free_port()}/x", source="s")
    assert info.value.reason == "connection refused"


def test_redirect_loop(server: FeedServer, make_fetcher: Callable[..., Fetcher]) -> None:
    url = server.add("/loop", Route(handler=redirect_loop_handler))
    with pytest.raises(IngestError) as info:
        make_fetcher().get(url, source="s")
    assert info.value.reason == "too many redirects (more than 5)"
    assert len(server.hits("/loop")) == 6  # the first request and five redirects


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "streamed"])
def test_body_over_the_cap(
    send_length: bool, server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/big", Route(body=b"x" * TEN_MB, send_length=send_length))
    started = time.monotonic()
    with pytest.raises(IngestError) as info:
        make_fetcher().get(url, source="s")
    assert info.value.reason == "response larger than 5242880 bytes"
    assert len(info.value.raw) <= 2048
    assert time.monotonic() - started < 5


def test_invalid_url_is_an_ingest_error(make_fetcher: Callable[..., Fetcher]) -> None:
    with pytest.raises(IngestError, match="invalid URL"):
        make_fetcher().get("gopher://example.test/", source="s")


# -- FeedPoller.run_once ---------------------------------------------------------------------


def test_run_once_delivers_stories_and_merges_source_tickers(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/sa.xml", fixture_route("seekingalpha"))
    source = feed_source(url, name="sa-aapl", tickers=("AAPL", "TSLA"))
    results = Results()
    poller = FeedPoller([source], results, fetcher=make_fetcher(), clock=FakeClock())
    outcome = poller.run_once("sa-aapl")
    assert not outcome.failed and len(outcome.stories) == 20
    for story in outcome.stories:
        assert {"AAPL", "TSLA"} <= set(story.tickers) and len(set(story.tickers)) == len(
            story.tickers
        )
    assert outcome.stories[0].tickers[:2] == ("ORCL", "ADBE")  # the feed's own come first
    [(name, stories, errors)] = results.calls
    assert name == "sa-aapl" and stories == outcome.stories and errors == []
    counters = poller.counters()["sa-aapl"]
    assert counters["fetches"] == 1 and counters["stories"] == 20
    assert counters["next_run"] == NOW + timedelta(seconds=300)


def test_second_fetch_is_not_modified_and_costs_no_parse(
    server: FeedServer, make_fetcher: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    parses: list[str] = []
    real_parse = poller_module.parse_feed

    def counting_parse(*args: object, **kwargs: object) -> object:
        parses.append(str(args[0]))
        return real_parse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(poller_module, "parse_feed", counting_parse)
    url = server.add("/nyt.xml", fixture_route("nytimes"))
    results = Results()
    poller = FeedPoller([feed_source(url, name="nyt")], results, fetcher=make_fetcher())
    assert len(poller.run_once("nyt").stories) == 50
    second = poller.run_once("nyt")
    assert second.not_modified and second.stories == [] and not second.failed
    assert parses == ["nyt"]  # parsed once
    assert len(results.calls) == 1  # nothing new to hand over
    counters = poller.counters()["nyt"]
    assert counters["fetches"] == 2 and counters["not_modified"] == 1
    assert counters["stories"] == 50 and counters["consecutive_failures"] == 0


def test_failed_callback_forgets_validators(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/cnbc.xml", fixture_route("cnbc"))
    calls: list[int] = []

    def flaky(name: str, stories: list[RawStory], errors: list[IngestError]) -> None:
        calls.append(len(stories))
        if len(calls) == 1:
            raise RuntimeError("broker down")

    poller = FeedPoller([feed_source(url)], flaky, fetcher=make_fetcher(), clock=FakeClock())
    first = poller.run_once("feed")
    assert first.failed and first.errors[-1].reason == "callback failed: broker down"
    assert poller.counters()["feed"]["errors"] == {"callback": 1}
    second = poller.run_once("feed")  # full body again, not a 304: the stories were lost
    assert not second.not_modified and calls == [30, 30]


BAD_ROUTES: dict[str, tuple[Route, str, str]] = {
    "malformed": (Route(body=b"<rss><channel><item><tit"), "malformed XML: ", "malformed_xml"),
    "bomb": (Route(body=billion_laughs()), "XML bomb rejected: ", "xml_bomb"),
    "xxe": (Route(body=xxe_payload()), "XML bomb rejected: ", "xml_bomb"),
    "404": (Route(status=404), "HTTP 404", "http_404"),
    "500": (Route(status=500), "HTTP 500", "http_500"),
    "503": (Route(status=503), "HTTP 503", "http_503"),
    "slow": (Route(body=rss(item("x")), delay=5.0), "timeout after 0.3 s", "timeout"),
    "reset": (Route(reset=True), "connection reset", "connection_reset"),
    "loop": (Route(handler=redirect_loop_handler), "too many redirects", "too_many_redirects"),
    "huge": (Route(body=b"<rss>" + b"x" * TEN_MB), "response larger than", "too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROUTES))
def test_bad_input_is_an_ingest_error_never_an_exception(
    case: str, server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    route, reason, kind = BAD_ROUTES[case]
    url = server.add(f"/{case}", route)
    results = Results()
    poller = FeedPoller(
        [feed_source(url)], results, fetcher=make_fetcher(read_timeout=0.3), clock=FakeClock()
    )
    started = time.monotonic()
    outcome = poller.run_once("feed")
    assert time.monotonic() - started < 3
    assert outcome.failed and outcome.stories == []
    assert outcome.errors[0].reason.startswith(reason) and outcome.errors[0].source == "feed"
    assert results.calls == [("feed", [], outcome.errors)]
    counters = poller.counters()["feed"]
    assert counters["errors"] == {kind: 1} and counters["consecutive_failures"] == 1


def test_invalid_utf8_feed_is_kept_with_a_warning(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/enc.xml", Route(body=rss(item("Caf\udce9 \udcff rally"))))
    poller = FeedPoller([feed_source(url)], Results(), fetcher=make_fetcher())
    outcome = poller.run_once("feed")
    assert not outcome.failed and len(outcome.stories) == 1 and outcome.warnings
    assert poller.counters()["feed"]["warnings"] == 1


def test_parser_bug_becomes_an_internal_error(
    server: FeedServer, make_fetcher: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(poller_module, "parse_feed", broken)
    url = server.add("/cnbc.xml", fixture_route("cnbc"))
    poller = FeedPoller([feed_source(url)], Results(), fetcher=make_fetcher())
    outcome = poller.run_once("feed")
    assert outcome.failed and outcome.errors[0].reason == "internal error: KeyError: 'boom'"


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_caps_and_resets(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/feed.xml", Route(status=503))
    clock = FakeClock()
    poller = FeedPoller(
        [feed_source(url, interval_seconds=300)],
        Results(),
        fetcher=make_fetcher(),
        clock=clock,
        max_backoff_seconds=3600,
    )
    intervals = []
    for _ in range(5):
        outcome = poller.run_once("feed")
        assert outcome.failed
        intervals.append(outcome.interval_seconds)
        counters = poller.counters()["feed"]
        assert counters["next_run"] == clock.now + timedelta(seconds=outcome.interval_seconds)
        clock.advance(outcome.interval_seconds)
    assert intervals == [600, 1200, 2400, 3600, 3600]
    counters = poller.counters()["feed"]
    assert counters["consecutive_failures"] == 5 and counters["errors"] == {"http_503": 5}
    assert counters["last_error"] == "HTTP 503" and counters["last_success"] is None

    server.add("/feed.xml", fixture_route("cnbc"))  # the source recovers
    outcome = poller.run_once("feed")
    assert not outcome.failed and outcome.interval_seconds == 300
    counters = poller.counters()["feed"]
    assert counters["consecutive_failures"] == 0 and counters["interval_seconds"] == 300
    assert counters["last_success"] == clock.now
    assert counters["next_run"] == clock.now + timedelta(seconds=300)


def test_backoff_reschedules_the_scheduler_job(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = server.add("/feed.xml", Route(status=500))
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)  # jobs get real next-run times but never fire
    source = feed_source(url, interval_seconds=100, jitter_seconds=5)
    poller = FeedPoller([source], Results(), fetcher=make_fetcher(), scheduler=scheduler)
    try:
        poller.start()
        job = scheduler.get_job(FeedPoller.job_id("feed"))
        assert job is not None and job.trigger.interval == timedelta(seconds=100)

        for expected in (200, 400):
            before = datetime.now(UTC)
            poller.run_once(source)
            job = scheduler.get_job(FeedPoller.job_id("feed"))
            assert job.trigger.interval == timedelta(seconds=expected)
            assert job.trigger.jitter == 5
            next_run = poller.counters()["feed"]["next_run"]
            assert next_run == job.next_run_time
            low = before + timedelta(seconds=expected)
            assert low <= next_run <= datetime.now(UTC) + timedelta(seconds=expected + 5)

        server.add("/feed.xml", fixture_route("cnbc"))
        poller.run_once(source)
        job = scheduler.get_job(FeedPoller.job_id("feed"))
        assert job.trigger.interval == timedelta(seconds=100)
    finally:
        poller.shutdown()
        assert scheduler.get_job(FeedPoller.job_id("feed")) is None
        scheduler.shutdown(wait=False)


def test_reason_kind() -> None:
    assert reason_kind("HTTP 503") == "http_503"
    assert reason_kind("page 2: HTTP 500") == "http_500"
    assert reason_kind("timeout after 10 s") == "timeout"
    assert reason_kind("connect timeout after 5 s") == "timeout"
    assert reason_kind("XML bomb rejected: EntitiesForbidden(...)") == "xml_bomb"
    assert reason_kind("missing field: title") == "missing_field"
    assert reason_kind("Something New: detail") == "something_new"


# -- lifecycle -------------------------------------------------------------------------------


def test_start_polls_at_once_and_shutdown_is_clean(server: FeedServer) -> None:
    urls = {name: server.add(f"/{name}.xml", fixture_route(name)) for name in ("cnbc", "google")}
    done = threading.Event()
    seen: dict[str, int] = {}

    def on_result(name: str, stories: list[RawStory], errors: list[IngestError]) -> None:
        seen[name] = len(stories)
        if len(seen) == 2:
            done.set()

    poller = FeedPoller(
        [feed_source(url, name=name) for name, url in urls.items()],
        on_result,
        fetcher=Fetcher(read_timeout=5.0, trust_env=False, allow_private=True),
        close_fetcher=True,
    )
    poller.start()
    poller.start()  # idempotent
    try:
        assert done.wait(10), "the first run should happen right after start()"
        assert seen == {"cnbc": 30, "google": 100}
        snapshot = poller.counters()
        assert all(snapshot[n]["fetches"] == 1 for n in urls)
        assert all(snapshot[n]["next_run"] > datetime.now(UTC) for n in urls)
    finally:
        poller.shutdown()
    poller.shutdown()  # safe twice
    assert not poller.scheduler.running and poller.fetcher._client.is_closed


def test_shutdown_waits_for_a_running_poll(server: FeedServer) -> None:
    url = server.add("/slow.xml", Route(body=rss(item("Slow but fine")), delay=0.5))
    results = Results()
    poller = FeedPoller(
        [feed_source(url)],
        results,
        fetcher=Fetcher(read_timeout=5.0, trust_env=False, allow_private=True),
        close_fetcher=True,
    )
    poller.start()
    deadline = time.monotonic() + 5
    while not server.hits("/slow.xml") and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    poller.shutdown(wait=True)  # must not deadlock with the job's own bookkeeping
    assert time.monotonic() - started < 5
    assert [(name, [s.title for s in stories]) for name, stories, _ in results.calls] == [
        ("feed", ["Slow but fine"])
    ]


def test_from_settings(server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINSENT_CONFIG", raising=False)
    url = server.add("/cnbc.xml", fixture_route("cnbc"))
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(
        f"- {{name: cnbc, url: '{url}', kind: rss, interval_seconds: 60,"
        " allow_private_network: true}\n"
    )
    settings = Settings(cache_dir=tmp_path / "cache")
    results = Results()
    poller = FeedPoller.from_config(
        PollerConfig.from_settings(settings), results, sources_file, trust_env=False
    )
    try:
        assert [s.name for s in poller.sources] == ["cnbc"]
        assert len(poller.run_once("cnbc").stories) == 30
        assert (tmp_path / "cache" / "ingest" / "http_validators.json").exists()
    finally:
        poller.shutdown()


def test_duplicate_sources_are_refused() -> None:
    source = feed_source("http://a.test/")
    with pytest.raises(ValueError, match="duplicate source names"):
        FeedPoller([source, source], Results())


def test_stated_symbols_are_kept_when_known_or_the_source_is_trusted(
    server: FeedServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    entry = (
        "<item><title>Deal</title><link>http://e.test/1</link>"
        '<category domain="https://e.test/symbol">AAPL</category>'
        '<category domain="https://e.test/symbol">ZZZQX</category></item>'
    )
    url = server.add("/symbols.xml", Route(body=rss(entry)))
    untrusted = feed_source(url, name="untrusted")
    trusted = feed_source(url, name="trusted", trust_stated_tickers=True)
    poller = FeedPoller([untrusted, trusted], Results(), fetcher=make_fetcher())
    assert [s.tickers for s in poller.run_once("untrusted").stories] == [("AAPL",)]
    assert [s.tickers for s in poller.run_once("trusted").stories] == [("AAPL", "ZZZQX")]
    # A watchlist ticker is a known symbol.
    watching = Watchlist((WatchedCompany("ZZZQX"),))
    poller = FeedPoller([untrusted], Results(), fetcher=make_fetcher(), watchlist=watching)
    assert [s.tickers for s in poller.run_once("untrusted").stories] == [("AAPL", "ZZZQX")]


def test_the_poller_config_reads_the_watchlist_once(tmp_path: Path) -> None:
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text("companies:\n  - {ticker: ACME}\n", encoding="utf-8")
    settings = Settings(cache_dir=tmp_path / "cache", watchlist_file=watchlist)
    assert PollerConfig.from_settings(settings).watchlist.tickers == ("ACME",)
    given = Watchlist((WatchedCompany("ZETA"),))  # the one the ingest sink already read
    assert PollerConfig.from_settings(settings, watchlist=given).watchlist is given
