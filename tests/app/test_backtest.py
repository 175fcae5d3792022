"""`finsent backtest`: its period, and end to end through a real broker, with the shipped
attention model:

- determinism: two runs of one feed give byte-identical alert lists and reports;
- isolation: a run never writes the live topics, the live store or the live consumer groups;
- the report holds every alert and every event;
- parity: the live path (every stage its own process, fed by `finsent ingest replay`, with other
  micro-batch sizes) and the backtest path give the same alerts.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from support.stages import StageProcesses, wait_until

from finsent.app.backtest import (
    BacktestError,
    BacktestRequest,
    BacktestResult,
    Offsets,
    parse_period,
    run_alert_list,
    run_backtest,
)
from finsent.app.backtest_report import alert_lines, fired_alerts
from finsent.app.kafka_local import LocalKafka
from finsent.core.records import Alert
from finsent.core.settings import TOPIC_NAMES, Settings
from finsent.ingest.sample_feed import generate, write_jsonl
from finsent.runtime.kafka_io import ensure_topics, list_topics
from finsent.runtime.store import Store, backtest_runs

FEED_END = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
HOURS = 12
EPISODE_START = datetime(2026, 3, 2, 14, 15, tzinfo=UTC)  # sample_feed's: 70 %, quarter hour


def test_a_period_reads_dates_and_times_in_utc() -> None:
    assert parse_period(None, None) == (None, None)
    assert parse_period("2023-03-01", None) == (datetime(2023, 3, 1, tzinfo=UTC), None)
    # A bare --to date includes its day; a time is taken as it is.
    assert parse_period(None, "2023-03-31") == (None, datetime(2023, 4, 1, tzinfo=UTC))
    assert parse_period(None, "20230331") == (None, datetime(2023, 4, 1, tzinfo=UTC))
    assert parse_period(None, "2023-03-31T12:00") == (None, datetime(2023, 3, 31, 12, tzinfo=UTC))
    assert parse_period("2023-03-01T09:00+02:00", "2023-03-01T12:00Z") == (
        datetime(2023, 3, 1, 7, tzinfo=UTC),
        datetime(2023, 3, 1, 12, tzinfo=UTC),
    )
    assert parse_period("2023-03-01", "2023-03-01") == (
        datetime(2023, 3, 1, tzinfo=UTC),
        datetime(2023, 3, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("March", None, "--from takes an ISO date or time"),
        (None, "2023-13-01", "--to takes an ISO date or time"),
        ("2023-03-02", "2023-03-01", "must be before --to"),
        ("2023-03-01T12:00", "2023-03-01T12:00", "must be before --to"),
    ],
)
def test_a_bad_period_names_the_option(since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        parse_period(since, until)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so the int8 model is exported once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample feed, then quiet stories two and three days on: the watermark of the last
    closes every earlier window on the live path, as the backtest's end-of-feed close does;
    the window of the last (which only the backtest closes) is quiet news: alerts still
    active two days on see the first one, on both paths, and resolve."""
    rows = generate(end=FEED_END, hours=HOURS, seed=11)
    for days, title in ((2, "Dollar edges higher against the euro in quiet trade"),
                        (3, "Oil prices steady as traders await inventory data")):  # fmt: skip
        rows.append(
            {
                "title": title,
                "published_at": (FEED_END + timedelta(days=days)).isoformat(),
                "source": "Closing Wire",
                "url": f"https://news.example/closing-{days}",
            }
        )
    return write_jsonl(rows, tmp_path_factory.mktemp("feed") / "sample.jsonl")


def live_settings(broker: LocalKafka, tmp_path: Path, cache: Path, **extra: object) -> Settings:
    return Settings(
        kafka_port=broker.port,
        kafka_controller_port=broker.controller_port,
        topic_prefix=f"live-{tmp_path.name[-12:]}.",
        store_url=f"sqlite:///{tmp_path / 'live.db'}",
        cache_dir=cache,
        partitions=1,
        scorer="attention",
        metrics_port=0,
        **extra,
    )


def request(feed: Path, run_id: str, tmp_path: Path, events: Path | None = None):
    return BacktestRequest(
        feed=feed, run_id=run_id, report_dir=tmp_path / run_id, events=events, stall_timeout_s=120
    )


def write_events(path: Path) -> Path:
    path.write_text(
        "match_before_hours: 1\n"
        "events:\n"
        "  - name: Northwind Bank <crisis>\n"
        "    key: [ticker:NWB, topic:Financials]\n"
        f"    start: {EPISODE_START.isoformat()}\n"
        f"    end: {(EPISODE_START + timedelta(hours=2)).isoformat()}\n"
        "  - name: Apex Motors recall that never happened\n"
        "    key: ticker:APXM\n"
        f"    start: {(FEED_END - timedelta(hours=10)).isoformat()}\n"
        f"    end: {(FEED_END - timedelta(hours=9)).isoformat()}\n",
        encoding="utf-8",
    )
    return path


def live_snapshot(settings: Settings) -> dict[str, object]:
    """What a backtest must leave alone: live topics' contents, the live store's bytes and
    the consumer groups."""
    offsets = Offsets(settings)  # no store: opening one may write it
    try:
        ends = {name: offsets.end(name) for name in TOPIC_NAMES}
    finally:
        offsets.close()
    files = sorted(Path(settings.database_url.removeprefix("sqlite:///")).parent.glob("live*"))
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        # Every group on the broker, but another test's live pipeline (the backtest run is
        # shared by this module's tests, whatever order they run in).
        groups = sorted(
            g[0]
            for g in admin.list_consumer_groups()
            if not g[0].startswith("live-") or g[0].startswith(settings.topic_prefix)
        )
    finally:
        admin.close()
    return {
        "ends": ends,
        "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
        "groups": groups,
    }


@dataclass(frozen=True)
class FirstRun:
    live: Settings
    before: dict[str, object]  # the live pipeline's snapshot, taken before the run
    events: Path
    tmp_path: Path
    result: BacktestResult


@pytest.fixture(scope="module")
def first_run(
    kafka_broker: LocalKafka,
    tmp_path_factory: pytest.TempPathFactory,
    model_cache: Path,
    feed: Path,
) -> FirstRun:
    """A backtest run beside a live pipeline. Both tests look at it: every run starts the
    production stages, the scorer with the shipped model, which is most of a run's time."""
    tmp_path = tmp_path_factory.mktemp("backtest")
    live = live_settings(kafka_broker, tmp_path, model_cache)
    # A live pipeline in place: its topics hold a story, its store an alert.
    ensure_topics(live)
    producer = KafkaProducer(bootstrap_servers=live.bootstrap_servers, acks="all")
    producer.send(live.topic("news.raw"), b'{"live": true}').get(30)
    producer.close()
    Store(live.database_url).close()
    before = live_snapshot(live)
    events = write_events(tmp_path / "events.yaml")
    result = run_backtest(live, request(feed, "det-1", tmp_path, events), threading.Event(), False)
    return FirstRun(live, before, events, tmp_path, result)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.weights
def test_backtest_is_deterministic_isolated_and_reports_everything(
    first_run: FirstRun, feed: Path
) -> None:
    live, before, events, tmp_path = (
        first_run.live,
        first_run.before,
        first_run.events,
        first_run.tmp_path,
    )
    first = first_run.result
    second = run_backtest(live, request(feed, "det-2", tmp_path, events), threading.Event(), False)

    # Determinism: the same feed and settings give the same bytes.
    fired = fired_alerts(first.alerts)
    assert any(a.key == "ticker:NWB" for a in fired), first.alerts
    for name in ("alert_events.jsonl", "alerts.csv", "events.csv", "series.csv"):
        assert (tmp_path / "det-1" / name).read_bytes() == (tmp_path / "det-2" / name).read_bytes()
    assert (tmp_path / "det-1" / "alert_events.jsonl").read_bytes() == alert_lines(second.alerts)
    assert first.stories == second.stories == len(feed.read_text().splitlines())

    # Isolation: nothing live moved, and the run's own topics are gone.
    assert live_snapshot(live) == before
    assert not [
        t for t in list_topics(live) if t.startswith(("backtest-det-1.", "backtest-det-2."))
    ]
    runs = Store(live.backtest_registry_database_url).query(backtest_runs)
    assert {(r["id"], r["status"], r["alert_count"]) for r in runs} == {
        ("det-1", "finished", len(fired)),
        ("det-2", "finished", len(fired)),
    }
    assert Path(runs[0]["report_path"]).name == "report.html"

    # The report: every alert (time, key, severity, headlines) and every event.
    report = tmp_path / "det-1"
    page = (report / "report.html").read_text(encoding="utf-8")
    with (report / "alerts.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["key"], r["fired_at"], r["severity"]) for r in rows] == [
        (a.key, a.updated_at.isoformat(), a.severity) for a in fired
    ]
    for alert in fired:
        assert html.escape(alert.key) in page
        assert alert.updated_at.isoformat() in page
        for headline in alert.headlines:
            assert html.escape(headline.title) in page
    with (report / "events.csv").open(encoding="utf-8") as fh:
        outcome = {r["name"]: r for r in csv.DictReader(fh)}
    assert outcome["Northwind Bank <crisis>"]["result"] == "hit"
    assert float(outcome["Northwind Bank <crisis>"]["lead_hours"]) <= 0  # fired after the start
    assert outcome["Apex Motors recall that never happened"]["result"] == "miss"
    assert "Northwind Bank &lt;crisis&gt;" in page and "<crisis>" not in page
    assert "Apex Motors recall that never happened" in page
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["hits"], summary["misses"]) == (1, 1)
    assert summary["alerts_fired"] == len(fired)
    caught = int(outcome["Northwind Bank <crisis>"]["alerts"])
    assert summary["false_alerts"] == len(fired) - caught


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.weights
def test_live_path_and_backtest_give_the_same_alerts(
    kafka_broker: LocalKafka, tmp_path: Path, model_cache: Path, feed: Path, first_run: FirstRun
) -> None:
    # Other micro-batches than the backtest's: batch-invariant scoring makes them irrelevant.
    # No resolution for want of data, as in a backtest: the feed's two-day gap would (rightly)
    # resolve the live path's alerts still active, which a replay leaves to the data.
    live = live_settings(
        kafka_broker, tmp_path, model_cache, batch_max_size=7, alert_no_data_windows=0
    )
    ensure_topics(live)
    stages = StageProcesses(live, tmp_path)
    try:
        for stage in ("scorer", "router", "aggregator", "alerter"):
            stages.start(stage, stage)
        replay = stages.start("replay", "ingest", "replay", str(feed), "--no-progress")
        assert replay.wait(120) == 0, stages.log("replay")
        store = Store(live.database_url)
        offsets = Offsets(live, store)
        chain = (
            ("scorer", "news.raw"),
            ("router", "news.scored"),
            ("aggregator", "news.keyed"),
            ("alerter", "sentiment.windows"),
        )
        try:
            wait_until(
                lambda: all(offsets.consumed(s) >= offsets.end(t) > 0 for s, t in chain),
                180,
                "the live stages to drain the feed",
                interval_s=1.0,
                context=stages.tails,
            )
        finally:
            offsets.close()
        live_alerts: list[Alert] = run_alert_list(store)
    finally:
        stages.stop_all()

    # The backtest path: the module's run, with the default micro-batches (64).
    result = first_run.result
    assert first_run.live.batch_max_size == 64

    assert fired_alerts(live_alerts), "the sample feed's bank episode should fire"
    assert alert_lines(result.alerts) == alert_lines(live_alerts)
    assert (first_run.tmp_path / "det-1" / "alert_events.jsonl").read_bytes() == alert_lines(
        live_alerts
    )


# -- the run's model: pinned from the live registry, recorded ---------------------------------


def test_a_backtest_pins_the_promoted_model_or_the_one_asked_for(tmp_path: Path) -> None:

    from support.model_versions import SHIPPED_VERSION, register_fake

    from finsent.app.backtest import pin_model
    from finsent.model.registry import ModelRegistry, RegistryConfig, RegistryError
    from finsent.runtime.store import Store

    settings = Settings(store_url=f"sqlite:///{tmp_path / 'live.db'}", cache_dir=tmp_path / "c")
    assert pin_model(settings, None)[1] == SHIPPED_VERSION  # nothing promoted: the default
    live = Store(settings.database_url)
    registry = ModelRegistry(live, RegistryConfig.from_settings(settings))
    now = datetime(2026, 12, 1, tzinfo=UTC)
    newer = register_fake(registry, tmp_path / "work", "finsent-attn-1+0000aaaa", now=now)
    registry.promote(newer, by="ann", reason="test", now=now)

    pinned, version = pin_model(settings, None)  # what the live scorers run now
    assert version == newer
    assert pinned.model_artifact == registry.path_of(newer)
    assert pinned.model_follow_registry is False  # one model from start to end
    assert pin_model(settings, SHIPPED_VERSION)[1] == SHIPPED_VERSION  # --model: as it was
    with pytest.raises(RegistryError, match="no model version 'nope'"):
        pin_model(settings, "nope")
    lexicon = settings.model_copy(update={"scorer": "lexicon"})
    assert pin_model(lexicon, None) == (lexicon, None)
    live.close()
