from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.replay import (
    ReplayStats,
    RowError,
    load,
    parse_tickers,
    parse_time,
    read_rows,
    to_news_item,
)
from ingest.sample_feed import COMPANIES, EPISODE, generate

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_parse_time_handles_zones_and_naive_utc() -> None:
    assert parse_time("2023-03-10T09:30:00-05:00") == datetime(2023, 3, 10, 14, 30, tzinfo=UTC)
    assert parse_time("2023-03-10T14:30:00Z") == datetime(2023, 3, 10, 14, 30, tzinfo=UTC)
    assert parse_time("2023-03-10 14:30:00") == datetime(2023, 3, 10, 14, 30, tzinfo=UTC)
    for bad in ("", None, "yesterday", 12):
        with pytest.raises(RowError):
            parse_time(bad)


def test_parse_tickers() -> None:
    assert parse_tickers("$aapl, MSFT  brk.b") == ("AAPL", "MSFT", "BRK.B")
    assert parse_tickers(["NWB", "NWB"]) == ("NWB",)
    assert parse_tickers(None) == ()
    with pytest.raises(RowError, match="invalid ticker"):
        parse_tickers("<script>")


def test_row_becomes_a_clean_news_item() -> None:
    row = {
        "title": "  Bank   shares\nfall ",
        "published_at": "2023-03-10T14:30:00Z",
        "url": "https://x/1",
    }
    item = to_news_item(row, "replay", NOW)
    assert item.title == "Bank shares fall"
    assert item.source == "replay"
    assert item.fetched_at == NOW
    assert item.id == to_news_item({**row, "title": "other"}, "replay", NOW).id  # url-based id


def test_missing_title_is_a_row_error() -> None:
    with pytest.raises(RowError, match="title"):
        to_news_item({"published_at": "2023-03-10T14:30:00Z"}, "s", NOW)


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
    items = load(path, "feed", None, stats)
    assert [i.title for i in items] == ["earlier", "later"]
    assert (stats.read, stats.dead) == (6, 4)


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text("title,published_at,source,tickers\nBank falls,2023-03-10T14:00:00Z,wire,NWB\n")
    rows = [row for _, _, row in read_rows(path)]
    assert rows == [
        {
            "title": "Bank falls",
            "published_at": "2023-03-10T14:00:00Z",
            "source": "wire",
            "tickers": "NWB",
        }
    ]


def test_unknown_file_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="csv or .jsonl"):
        list(read_rows(tmp_path / "feed.xml"))


@given(st.binary(max_size=200))
def test_any_line_is_a_row_or_a_row_error(tmp_path_factory, line: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.jsonl"
    path.write_bytes(line)
    stats = ReplayStats()
    items = load(path, "s", None, stats)
    assert stats.read == len(items) + stats.dead


def test_sample_feed_is_deterministic_and_has_its_episode() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    rows = generate(end=end, seed=3)
    assert rows == generate(end=end, seed=3)
    assert [r["published_at"] for r in rows] == sorted(r["published_at"] for r in rows)
    victim = COMPANIES[0].name
    episode_titles = {t.format(c=victim) for t in EPISODE}
    assert sum(r["title"] in episode_titles for r in rows) >= 40
    assert all(r["published_at"] < end.isoformat() for r in rows)
