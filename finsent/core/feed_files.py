"""The feed file formats a replay reads: CSV, JSONL and the RSS-archive JSON.

Pure readers with no Kafka and no normalization: the replay (ingest) turns their rows into
stories, and domain adaptation (model) reads the archive's titles with the same code. A record
that cannot be read (bad JSON, nesting too deep, a CSV field over the csv module's limit) is a
`RowError` in its place; the records after it are still read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class RowError(ValueError):
    pass


def read_rows(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | RowError]]:
    """Yield (line number, raw bytes, row or error) for each record in a CSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield number, raw, RowError(f"line {number}: invalid JSON: {exc}")
                    continue
                except RecursionError:
                    yield number, raw[:2048], RowError(f"line {number}: JSON nested too deep")
                    continue
                if not isinstance(row, dict):
                    yield number, raw, RowError(f"line {number}: expected a JSON object")
                    continue
                yield number, raw, row
    elif suffix == ".json" or path.is_dir():
        yield from read_archive(path)
    elif suffix == ".csv":
        with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            yield from _csv_rows(csv.DictReader(fh))
    else:
        raise ValueError(
            f"{path}: replay reads .csv, .jsonl or RSS-archive .json files (or a folder of them),"
            f" not {suffix or 'no extension'}"
        )


def _csv_rows(
    reader: csv.DictReader[str],
) -> Iterator[tuple[int, bytes, dict[str, Any] | RowError]]:
    """The reader's records from number 2 (after the header); a record the csv module refuses
    (a field over its 128 KiB limit, say) is a RowError, and reading goes on after it."""
    number = 1
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, b"", RowError(f"record {number}: unreadable CSV: {exc}")
            continue
        raw = json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape")
        yield number, raw, row


def archive_source(feed_url: str) -> str:
    """A short source name for an RSS-archive feed URL: host plus the feed's last path part."""
    parts = urlsplit(feed_url.strip())
    host = parts.netloc.lower().removeprefix("www.").removeprefix("feeds.")
    stem = parts.path.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return f"{host}/{stem}" if stem else host or "rss-archive"


def _excerpt(entry: Any) -> bytes:
    """An entry as JSON bytes for a dead letter (its repr when it nests too deep to dump)."""
    try:
        text = json.dumps(entry, ensure_ascii=False)
    except (RecursionError, ValueError):
        text = f'"a {type(entry).__name__} nested too deep to show"'
    return text.encode("utf-8", "replace")


def read_archive(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | RowError]]:
    """The RSS-archive JSON (`rss_link_db_2023_business_h1`): a folder of `*_entries.json`
    files, or one file; each is `{"source": …, "entries": [...]}` or a bare list."""
    files = sorted(path.rglob("*_entries.json")) if path.is_dir() else [path]
    number = 0
    for file in files:
        data = file.read_bytes()
        try:
            payload = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            number += 1
            yield number, data[:2048], RowError(f"{file.name}: invalid JSON: {exc}")
            continue
        entries = payload.get("entries") if isinstance(payload, dict) else payload
        if not isinstance(entries, list):
            number += 1
            yield number, data[:2048], RowError(f"{file.name}: no list of entries")
            continue
        for entry in entries:
            number += 1
            raw = _excerpt(entry)
            if not isinstance(entry, dict):
                yield number, raw, RowError(f"{file.name}: entry {number} is not an object")
                continue
            yield (
                number,
                raw,
                {
                    "title": entry.get("title"),
                    "url": entry.get("link") or "",
                    "body": entry.get("description") or "",
                    "published_at": entry.get("date_published"),
                    "source": archive_source(str(entry.get("source") or "")),
                },
            )
