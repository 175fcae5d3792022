"""Replay files: rows become raw stories, archives in both shapes, CSV, bad rows counted, the
sample feed, a period's cut; then the whole RSS 2023 H1 archive through a real broker (marked
``kafka``): the expected count after dedup, and a second replay (a restart: a new process state
over the same dedup memory) sends nothing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import SHARED_DATASETS
from support.records import news_item
from support.stages import read_topic

from finsent.core.feed_files import archive_source
from finsent.core.records import MAX_ID_CHARS, NewsItem, decode, encode
from finsent.core.settings import Settings
from finsent.ingest.dedup import normalize_title
from finsent.ingest.replay import ReplayStats, load, replay, row_story, within_period
from finsent.ingest.sample_feed import COMPANIES, EPISODE, generate
from finsent.runtime.kafka_io import ensure_topics

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_row_becomes_a_raw_story() -> None:
    row = {
        "title": "  Bank   shares\nfall ",
        "published_at": "2023-03-10T14:30:00Z",
        "url": "https://x.test/1?utm_source=rss",
        "tickers": "$aapl, MSFT",
    }
    story = row_story(row, "replay", b"raw")
    assert (story.source, story.title, story.published) == (
        "replay",
        row["title"],
        row["published_at"],
    )
    assert story.tickers == ("aapl", "MSFT") and story.raw == b"raw"


def test_archive_in_both_shapes(tmp_path: Path) -> None:
    entry = {
        "source": "https://www.cnbc.com/id/100727362/device/rss/rss.html",
        "title": "Banks &amp; regulators <b>meet</b>",
        "description": "<p>Talks go on.</p>",
        "link": "https://www.cnbc.com/2023/03/10/banks.html?utm_medium=rss",
        "date_published": "2023-03-10 22:14:15+00:00",
    }
    day = tmp_path / "2023" / "03" / "2023-03-10"
    day.mkdir(parents=True)
    (day / "a_entries.json").write_text(json.dumps({"source": "x", "entries": [entry]}))
    later = {
        **entry,
        "title": "Second story",
        "link": "https://www.cnbc.com/2",
        "date_published": "2023-03-11 08:00:00+00:00",
    }
    (day / "b_entries.json").write_text(json.dumps([later, "not an object"]))
    stats = ReplayStats()
    items = load(tmp_path / "2023", "archive", None, stats, NOW)
    assert (stats.read, stats.dead) == (3, 1)
    first = items[0]
    assert first.title == "Banks & regulators meet" and first.body == "Talks go on."
    assert first.source == "cnbc.com/rss" == archive_source(entry["source"])
    assert first.url == "https://www.cnbc.com/2023/03/10/banks.html"
    assert first.published_at == datetime(2023, 3, 10, 22, 14, 15, tzinfo=UTC)
    assert [i.title for i in items] == ["Banks & regulators meet", "Second story"]


def test_explicit_ids_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"id": "s-1", "title": "A", "published_at": "2023-03-10T14:00:00Z"}))
    assert [i.id for i in load(path, "f", None, ReplayStats(), NOW)] == ["s-1"]


def test_a_file_id_too_long_for_a_record_becomes_a_stable_short_one(tmp_path: Path) -> None:
    long_id = "https://wire.test/" + "x" * 300  # some files use the story's URL as its id
    path = tmp_path / "f.jsonl"
    path.write_text(
        json.dumps({"id": long_id, "title": "Harbor Trust Bank halts withdrawals"}) + "\n"
    )

    [first] = load(path, "f", None, ReplayStats(), NOW)
    [again] = load(path, "f", None, ReplayStats(), NOW)

    assert len(first.id) <= MAX_ID_CHARS and first.id == again.id
    assert decode(NewsItem, encode(first)) == first  # the consumers accept it


def test_load_sorts_by_time_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                json.dumps({"title": "later", "published_at": "2023-03-10T15:00:00Z"}).encode(),
                json.dumps({"title": "earlier", "published_at": "2023-03-10T14:00:00Z"}).encode(),
                b"{broken json",
                b"[1, 2]",
                json.dumps({"title": "no time"}).encode(),
                b"\xff\xfe not utf-8",
                b"",
            ]
        )
    )
    stats = ReplayStats()
    items = load(path, "feed", None, stats, NOW)
    # A story without a time keeps the fetch time, flagged; it is not an error.
    assert [i.title for i in items] == ["earlier", "later", "no time"]
    assert items[-1].time_inferred and items[-1].published_at == NOW
    assert (stats.read, stats.dead) == (6, 3)


@given(st.binary(max_size=200))
def test_any_line_is_a_row_or_a_row_error(tmp_path_factory, line: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.jsonl"
    path.write_bytes(line)
    stats = ReplayStats()
    items = load(path, "s", None, stats, NOW)
    assert stats.read == len(items) + stats.dead


def test_sample_feed_is_deterministic_and_has_its_episode() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    rows = generate(end=end, seed=3)
    assert rows == generate(end=end, seed=3)
    assert [r["published_at"] for r in rows] == sorted(r["published_at"] for r in rows)
    victim = COMPANIES[0].name
    episode_titles = {t.format(c=victim) for t in EPISODE}
    # Reruns of a headline are labelled as updates, so no two stories share a title.
    assert len({r["title"] for r in rows}) == len(rows)
    originals = [
        r["title"].split("-", 1)[1] if r["title"].startswith("UPDATE ") else r["title"]
        for r in rows
    ]
    assert sum(t in episode_titles for t in originals) >= 40
    assert all(r["published_at"] < end.isoformat() for r in rows)


@given(
    st.lists(st.integers(0, 100), max_size=30),
    st.none() | st.integers(0, 100),
    st.none() | st.integers(0, 100),
)
def test_a_period_keeps_what_was_published_in_it_in_order(
    hours: list[int], since: int | None, until: int | None
) -> None:
    def at(h: int) -> datetime:
        return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(hours=h)

    items = [
        news_item(id=f"s{n}", title=f"story {n}", published_at=at(h), fetched_at=NOW)
        for n, h in enumerate(hours)
    ]
    kept, outside = within_period(
        items, None if since is None else at(since), None if until is None else at(until)
    )
    assert kept == [
        i
        for i, h in zip(items, hours, strict=True)
        if (since is None or h >= since) and (until is None or h < until)
    ]
    assert outside == len(items) - len(kept)


# -- the whole archive through a real broker ------------------------------------

ARCHIVE = SHARED_DATASETS / "rss_link_db_2023_business_h1" / "2023"


def expected_after_dedup(items: list[NewsItem], horizon: timedelta) -> int:
    """The dedup rule, written plainly: a story is dropped when its canonical URL was seen
    before, or its normalized title within `horizon` of the story first seen with it; a
    dropped copy's other key then points at that original too."""
    urls: dict[str, datetime] = {}
    titles: dict[str, datetime] = {}
    kept = 0
    for item in items:  # publish-time order
        url, title = item.url, normalize_title(item.title)
        url_hit = urls.get(url) if url else None
        title_hit = titles.get(title) if title else None
        stale = title_hit is not None and item.published_at - title_hit > horizon
        if stale:
            title_hit = None
        original = url_hit if url_hit is not None else title_hit
        if original is not None:
            if url and url_hit is None:
                urls[url] = original
            if title and title_hit is None and not stale:
                titles[title] = original
            continue
        kept += 1
        if url:
            urls[url] = item.published_at
        if title:
            titles[title] = item.published_at
    return kept


def count_topic(settings: Settings) -> int:
    records = read_topic(settings, "news.raw", 120, max_partition_fetch_bytes=8 * 1024 * 1024)
    return len({decode(NewsItem, record.value).id for record in records})


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.exists(), reason="needs ../shared/datasets")
def test_archive_replay_sends_each_story_once(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    ensure_topics(settings, ["news.raw", "news.dlq"])
    items = load(ARCHIVE, "archive", None, ReplayStats(), datetime.now(UTC))
    expected = expected_after_dedup(items, timedelta(hours=settings.dedup_horizon_hours))
    assert 30_000 < expected < len(items) == 32_944  # the archive has real repeats

    first = replay(settings, ARCHIVE, threading.Event(), progress=False)
    assert (first.read, first.dead) == (32_944, 0)
    assert first.sent == expected and first.duplicates == first.read - expected
    assert count_topic(settings) == expected

    again = replay(settings, ARCHIVE, threading.Event(), progress=False)
    assert (again.sent, again.duplicates) == (0, 32_944)
    assert count_topic(settings) == expected


def test_one_bad_row_never_aborts_a_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import finsent.ingest.replay as replay_module

    real = replay_module.normalize

    def buggy(story, **kwargs):  # type: ignore[no-untyped-def]
        if story.title == "trips a bug":
            raise RuntimeError("unexpected")
        return real(story, **kwargs)

    monkeypatch.setattr(replay_module, "normalize", buggy)
    path = tmp_path / "feed.jsonl"
    rows = [
        {"title": "first", "published_at": "2023-03-10T14:00:00Z"},
        {"title": "odd tickers", "tickers": 5},
        {"title": "trips a bug"},
        {"title": "last", "published_at": "2023-03-10T15:00:00Z"},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    dead = Letters()
    stats = ReplayStats()
    items = load(path, "feed", dead, stats, NOW)  # type: ignore[arg-type]
    assert [i.title for i in items] == ["first", "last"]
    assert (stats.read, stats.dead) == (4, 2)
    assert [reason for reason, _ in dead.sent] == [
        "line 2: tickers is a int, not a list or a string",
        "line 3: internal error: RuntimeError: unexpected",
    ]


class Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, reason: str, raw: bytes, **_: object) -> None:
        self.sent.append((reason, raw))


# -- re-replaying a file, --fresh, and the progress bars (no broker: the test kit's sink) -----


@pytest.fixture
def memory_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings over a store in tmp_path, and a replay whose runner sends to the test kit."""
    import finsent.ingest.replay as replay_module
    from finsent.core.stages import stage
    from finsent.runtime.runner import SourceRunner
    from finsent.runtime.testing import CollectingSink, MemoryDeadLetters

    def memory_runner(settings: Settings, spec: object, **_: object) -> SourceRunner:
        return SourceRunner(
            stage("ingest"),
            producer=CollectingSink(),
            dead=MemoryDeadLetters("ingest"),
            sink_topic="news.raw",
        )

    monkeypatch.setattr(replay_module.SourceRunner, "kafka", memory_runner)
    return Settings(store_url=f"sqlite:///{tmp_path / 'store.db'}", cache_dir=tmp_path)


def feed_file(tmp_path: Path, stories: int = 3) -> Path:
    path = tmp_path / "feed.jsonl"
    rows = [
        {
            "title": f"Harbor Trust Bank story number {n}",
            "url": f"https://news.test/{n}",
            "published_at": f"2023-03-10T1{n}:00:00Z",
        }
        for n in range(stories)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def test_a_file_replayed_again_sends_nothing_and_says_why(
    memory_settings: Settings, tmp_path: Path
) -> None:
    from finsent.ingest.replay import memory_location, nothing_sent_reason

    feed = feed_file(tmp_path)
    first = replay(memory_settings, feed, threading.Event(), progress=False)
    assert (first.read, first.sent) == (3, 3)
    assert nothing_sent_reason(first, "x") is None

    again = replay(memory_settings, feed, threading.Event(), progress=False)
    assert (again.read, again.sent, again.duplicates) == (3, 0, 3)
    memory = memory_location(memory_settings.ingest_database_url)
    assert memory == str(tmp_path / "store-ingest.db")
    assert nothing_sent_reason(again, memory) == (
        f"sent 0 of 3 stories: all were seen before (dedup memory at {memory}); "
        "use --fresh to replay them again"
    )


def test_nothing_sent_names_what_else_was_not_sent() -> None:
    from finsent.ingest.replay import nothing_sent_reason

    stats = ReplayStats(read=1_500, duplicates=1_234, dead=200, outside=66)
    assert nothing_sent_reason(stats, "m.db") == (
        "sent 0 of 1,500 stories: 1,234 were seen before (dedup memory at m.db), "
        "200 unreadable and 66 outside the period; use --fresh to replay them again"
    )
    # Nothing sent for another reason than the memory: no advice about --fresh.
    assert nothing_sent_reason(ReplayStats(read=2, dead=2), "m.db") is None


def test_the_memory_location_hides_a_database_password() -> None:
    from finsent.ingest.replay import memory_location

    shown = memory_location("postgresql+psycopg://finsent:hunter2@db.test/finsent")
    assert "hunter2" not in shown and "db.test/finsent" in shown


def test_fresh_replays_every_story_and_leaves_the_memory_alone(
    memory_settings: Settings, tmp_path: Path
) -> None:
    from finsent.ingest.replay import throwaway_admission

    feed = feed_file(tmp_path)
    replay(memory_settings, feed, threading.Event(), progress=False)
    with throwaway_admission(memory_settings) as admission:
        fresh = replay(
            memory_settings, feed, threading.Event(), progress=False, admission=admission
        )
    assert (fresh.sent, fresh.duplicates) == (3, 0)
    # The deployment's memory still holds the file: a plain replay sends nothing.
    assert replay(memory_settings, feed, threading.Event(), progress=False).sent == 0


def test_progress_goes_to_stderr_with_a_bar_per_phase(
    memory_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay(memory_settings, feed_file(tmp_path, 5), threading.Event(), progress=True)
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays for the result line
    for phase in ("load feed.jsonl", "dedup", "send feed.jsonl"):
        assert phase in err
    assert "5/5" in err


def test_stories_are_sent_as_they_are_normalized_not_after_the_whole_file(
    memory_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backtest's scorer starts on the first chunk while the rest is still being read into
    stories; what is sent, and in which order, is what normalizing the whole file first
    gives (`load`, then the period, then the dedup of a fresh memory)."""
    import finsent.ingest.replay as replay_module
    from finsent.ingest.replay import PROGRESS_EVERY, throwaway_admission
    from finsent.runtime.testing import CollectingSink

    normalized_before: list[int] = []  # stories normalized when each record was sent
    sent_ids: list[bytes] = []
    calls = 0
    real_normalize, real_send = replay_module.normalize, CollectingSink.send

    def counting_normalize(story, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real_normalize(story, **kwargs)

    def noting_send(self, topic, key=None, value=b""):  # type: ignore[no-untyped-def]
        normalized_before.append(calls)
        sent_ids.append(key)
        return real_send(self, topic, key, value)

    monkeypatch.setattr(replay_module, "normalize", counting_normalize)
    monkeypatch.setattr(CollectingSink, "send", noting_send)
    path = tmp_path / "feed.jsonl"
    stories = 3 * PROGRESS_EVERY
    rows = [  # out of order, with exact duplicates (the same link), and a period to cut
        {
            "title": f"Harbor Trust Bank story number {n % (stories - 100)}",
            "url": f"https://news.test/{n % (stories - 100)}",
            "published_at": (
                datetime(2023, 3, 1, tzinfo=UTC) + timedelta(minutes=(n * 7919) % stories)
            ).isoformat(),
        }
        for n in range(stories)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    since = datetime(2023, 3, 1, 1, tzinfo=UTC)

    with throwaway_admission(memory_settings) as admission:
        stats = replay(
            memory_settings, path, threading.Event(), progress=False, since=since,
            admission=admission,
        )  # fmt: skip

    assert normalized_before[0] <= PROGRESS_EVERY < stories
    monkeypatch.setattr(replay_module, "normalize", real_normalize)
    everything, _ = within_period(load(path, "feed", None, ReplayStats(), NOW), since, None)
    with throwaway_admission(memory_settings) as admission:
        expected, duplicates = admission.decide(everything, NOW)
    assert (stats.sent, stats.duplicates, stats.outside) == (len(expected), duplicates, 60)
    assert sent_ids == [item.id.encode() for item in expected]


def test_load_reports_the_rows_read_as_it_goes(tmp_path: Path) -> None:
    from finsent.ingest.replay import PROGRESS_EVERY

    path = tmp_path / "big.jsonl"
    path.write_text(
        "\n".join(json.dumps({"title": f"story {n}"}) for n in range(2 * PROGRESS_EVERY + 5))
    )
    seen: list[int] = []
    load(path, "big", None, ReplayStats(), NOW, on_read=seen.append)
    assert seen == [PROGRESS_EVERY, 2 * PROGRESS_EVERY]
