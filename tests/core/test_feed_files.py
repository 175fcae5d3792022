"""The feed file readers: each record is a row or a row error, never an exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.feed_files import RowError, archive_source, read_archive, read_rows


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
    with pytest.raises(ValueError, match="csv, .jsonl"):
        list(read_rows(tmp_path / "feed.xml"))


@given(st.binary(max_size=300))
def test_any_jsonl_bytes_give_rows_or_row_errors(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.jsonl"
    path.write_bytes(data)
    for number, raw, row in read_rows(path):
        assert number >= 1 and isinstance(raw, bytes)
        assert isinstance(row, dict | RowError)


def test_a_broken_archive_file_is_one_row_error_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "a_entries.json").write_text("{not json", encoding="utf-8")
    entries = {"source": "https://www.cnbc.com/id/1/device/rss/rss.html", "entries": [
        {"title": "Stocks slide", "link": "https://x.test/1", "date_published": "2023-03-10"},
        "not an object",
    ]}  # fmt: skip
    (tmp_path / "b_entries.json").write_text(json.dumps(entries), encoding="utf-8")
    rows = [row for _, _, row in read_archive(tmp_path)]
    assert isinstance(rows[0], RowError) and "invalid JSON" in str(rows[0])
    assert isinstance(rows[1], dict) and rows[1]["title"] == "Stocks slide"
    assert isinstance(rows[2], RowError) and "not an object" in str(rows[2])


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://www.cnbc.com/id/100727362/device/rss/rss.html", "cnbc.com/rss"),
        ("https://feeds.a.dj.com/rss/RSSWorldNews.xml", "a.dj.com/RSSWorldNews"),
        ("", "rss-archive"),
    ],
)
def test_archive_source_is_host_and_feed_stem(url: str, name: str) -> None:
    assert archive_source(url) == name


def test_deeply_nested_json_is_a_row_error_and_the_next_line_is_read(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b'\n{"title": "kept"}\n')
    rows = list(read_rows(path))
    assert [type(row).__name__ for _, _, row in rows] == ["RowError", "dict"]
    assert str(rows[0][2]) == "line 1: JSON nested too deep" and len(rows[0][1]) <= 2048


def test_a_deeply_nested_archive_is_one_row_error(tmp_path: Path) -> None:
    path = tmp_path / "deep_entries.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    [(_, _, row)] = list(read_archive(path))
    assert isinstance(row, RowError) and "invalid JSON" in str(row)


def test_a_csv_field_over_the_limit_is_a_row_error_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("title,body\nfirst,ok\nhuge," + "x" * 200_000 + "\nlast,fine\n")
    rows = [row for _, _, row in read_rows(path)]
    assert [r["title"] if isinstance(r, dict) else "error" for r in rows] == [
        "first",
        "error",
        "last",
    ]
    assert str(rows[1]).startswith("record 3: unreadable CSV: field larger than field limit")
