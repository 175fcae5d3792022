"""Analysts' corrections of the model's calls: checked, read from and written to CSV, and
turned into training and held-out examples for ``finsent retrain``.

A correction sets a story's sentiment, its topic, or both; the story's text is the headline
the model read. Corrections are kept in the store's ``labels`` table, every one of them: a
story's label for a task is its latest correction that sets it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finsent.core.errors import UserError
from finsent.core.safety import spreadsheet_cell
from finsent.core.vocabulary import SENTIMENTS
from finsent.model.data import DataError, Example, sentiment_index, topic_index
from finsent.model.topics import TOPICS

ORIGINS = ("dashboard", "cli", "import")
# The CSV form of `finsent labels import` and `export`; import needs story_id, text or a
# stored story, and at least one of sentiment/topic.
CSV_COLUMNS = (
    "story_id",
    "text",
    "sentiment",
    "topic",
    "by",
    "at",
    "note",
    "predicted_sentiment",
    "predicted_topic",
    "model_version",
)
MAX_TEXT = 2000  # a headline; anything longer is not what the model reads
MAX_NOTE = 2000
MAX_NAME = 200
_FORMULA_STARTS = ("=", "+", "-", "@")  # what spreadsheet_cell quotes, but blanks (stripped)


class CorrectionError(UserError, ValueError):
    """A correction that cannot be stored: the message says which field and why."""


@dataclass(frozen=True)
class Correction:
    """One analyst's correction of one story; ``None`` leaves that task as it was."""

    story_id: str
    text: str
    sentiment: str | None
    topic: str | None
    by: str
    at: datetime
    note: str = ""
    predicted_sentiment: str | None = None
    predicted_topic: str | None = None
    model_version: str | None = None
    origin: str = "cli"

    def __post_init__(self) -> None:
        check_correction(self)

    def row(self) -> dict[str, Any]:
        """The ``labels`` row."""
        return asdict(self)


def check_correction(c: Correction) -> None:
    """Raise ``CorrectionError`` naming the first field that is wrong."""
    if not c.story_id.strip() or len(c.story_id) > 64:
        raise CorrectionError("story id: give the id of a scored story (at most 64 characters)")
    if not c.text.strip():
        raise CorrectionError(f"story {c.story_id}: its text is empty")
    if len(c.text) > MAX_TEXT:
        raise CorrectionError(f"story {c.story_id}: text over {MAX_TEXT} characters")
    if c.sentiment is None and c.topic is None:
        raise CorrectionError(f"story {c.story_id}: set a sentiment, a topic, or both")
    if c.sentiment is not None and c.sentiment not in SENTIMENTS:
        raise CorrectionError(
            f"story {c.story_id}: sentiment {c.sentiment!r} is not one of {', '.join(SENTIMENTS)}"
        )
    if c.topic is not None and c.topic not in TOPICS:
        raise CorrectionError(
            f"story {c.story_id}: topic {c.topic!r} is not one of the 20 analyst topics "
            "(`finsent labels topics` lists them)"
        )
    if not c.by.strip() or len(c.by) > MAX_NAME:
        raise CorrectionError("who: say who you are (--by NAME, at most 200 characters)")
    if len(c.note) > MAX_NOTE:
        raise CorrectionError(f"story {c.story_id}: note over {MAX_NOTE} characters")
    if c.at.tzinfo is None:
        raise CorrectionError(f"story {c.story_id}: its time has no time zone")
    if c.origin not in ORIGINS:
        raise CorrectionError(f"origin {c.origin!r} is not one of {', '.join(ORIGINS)}")


def normalize_sentiment(value: str | None) -> str | None:
    """A sentiment as typed (``neg``, ``Bearish``…) in the shared vocabulary; empty is None."""
    if value is None or not value.strip():
        return None
    try:
        return SENTIMENTS[sentiment_index(value)]
    except DataError:
        raise CorrectionError(
            f"sentiment {value.strip()!r} is not one of {', '.join(SENTIMENTS)}"
        ) from None


def normalize_topic(value: str | None) -> str | None:
    """A topic as typed, matched without regard to case; empty is None."""
    if value is None or not value.strip():
        return None
    wanted = " ".join(value.split()).lower()
    for topic in TOPICS:
        if topic.lower() == wanted:
            return topic
    raise CorrectionError(
        f"topic {value.strip()!r} is not one of the 20 analyst topics "
        "(`finsent labels topics` lists them)"
    )


# ---- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    line: int  # the CSV line the row starts on (the header is line 1)
    reason: str


def parse_csv(
    text: str,
    *,
    default_by: str | None,
    now: datetime,
    stored: Mapping[str, Mapping[str, Any]],
) -> tuple[list[Correction], list[ImportProblem]]:
    """The good rows of a corrections CSV and a problem for each bad one.

    ``stored`` maps story ids to their stored scored rows (title, topic, sentiment,
    model_version): a row may leave ``text`` out for a stored story, and the model's call is
    filled in from it. A row without ``by`` takes ``default_by``; without ``at``, ``now``.
    """
    # newline="": a lone \r ends a line as \n does, as the csv module expects of files.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error:
        header = []
    if "story_id" not in header or not ({"sentiment", "topic"} & set(header)):
        raise CorrectionError(
            "the CSV needs a header with story_id and sentiment and/or topic "
            f"(columns it may have: {', '.join(CSV_COLUMNS)})"
        )
    good: list[Correction] = []
    problems: list[ImportProblem] = []
    while True:
        line = reader.line_num + 1  # where the next row starts: a quoted cell may span lines
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a cell over the csv module's size limit
            problems.append(ImportProblem(line, f"not CSV: {exc}; the rows after it were not read"))
            break
        if not values:  # a blank line
            continue
        if len(values) > len(header):
            problems.append(ImportProblem(line, "more cells than the header has columns"))
            continue
        # A short row leaves its last columns out (empty).
        cells = {
            name: _unquoted(value.strip()) for name, value in zip(header, values, strict=False)
        }
        try:
            good.append(_row_correction(cells, default_by, now, stored))
        except CorrectionError as exc:
            problems.append(ImportProblem(line, str(exc)))
    return good, problems


def _unquoted(cell: str) -> str:
    """A cell as written before ``to_csv`` quoted a leading formula character."""
    if cell.startswith("'") and cell[1:2] in _FORMULA_STARTS:
        return cell[1:]
    return cell


def _row_correction(
    cells: Mapping[str, str],
    default_by: str | None,
    now: datetime,
    stored: Mapping[str, Mapping[str, Any]],
) -> Correction:
    story_id = cells.get("story_id", "")
    known = stored.get(story_id, {})
    text = cells.get("text") or str(known.get("title") or "")
    if not text:
        raise CorrectionError(f"story {story_id or '(none)'}: no text, and no such stored story")
    at = now
    if cells.get("at"):
        try:
            at = datetime.fromisoformat(cells["at"])
        except ValueError:
            raise CorrectionError(f"at {cells['at']!r} is not an ISO 8601 time") from None
        try:
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        except OverflowError:
            raise CorrectionError(f"at {cells['at']!r} is not a time in UTC's range") from None
    return Correction(
        story_id=story_id,
        text=text,
        sentiment=normalize_sentiment(cells.get("sentiment")),
        topic=normalize_topic(cells.get("topic")),
        by=cells.get("by") or default_by or "",
        at=at,
        note=cells.get("note", ""),
        predicted_sentiment=cells.get("predicted_sentiment") or known.get("sentiment"),
        predicted_topic=cells.get("predicted_topic") or known.get("topic"),
        model_version=cells.get("model_version") or known.get("model_version"),
        origin="import",
    )


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Corrections as CSV in ``CSV_COLUMNS`` order; ``parse_csv`` reads it back (a cell that
    would start a spreadsheet formula is quoted with a leading ``'``, which it takes off)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
        if isinstance(row.get("at"), datetime):
            cells["at"] = row["at"].astimezone(UTC).isoformat()
        # Story text comes from feeds: a cell must never run as a spreadsheet formula.
        writer.writerow({k: spreadsheet_cell(v) for k, v in cells.items()})
    return out.getvalue()


def read_csv_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CorrectionError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CorrectionError(f"{path}: not UTF-8 text") from None


# ---- training data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledStory:
    """A story's labels now (its corrections folded), and when it was last corrected."""

    story_id: str
    text: str
    sentiment: str | None
    topic: str | None
    at: datetime

    def example(self) -> Example:
        return Example(
            self.text,
            sentiment_index(self.sentiment) if self.sentiment else None,
            topic_index(self.topic) if self.topic else None,
            "corrections",
        )


def labelled_stories(current: Mapping[str, Mapping[str, Any]]) -> list[LabelledStory]:
    """``labels.current_labels`` output as stories, oldest correction first."""
    stories = [
        LabelledStory(sid, row["text"], row["sentiment"], row["topic"], row["at"])
        for sid, row in current.items()
    ]
    return sorted(stories, key=lambda s: (s.at, s.story_id))


def split_by_time(
    stories: Sequence[LabelledStory], holdout: float
) -> tuple[list[LabelledStory], list[LabelledStory]]:
    """(older, newest ``holdout`` share): the newest corrections are held out of training, so
    the gate sees whether the candidate learnt what analysts meant, not what they wrote."""
    ordered = sorted(stories, key=lambda s: (s.at, s.story_id))
    held = round(len(ordered) * holdout)
    if holdout > 0 and len(ordered) >= 2:
        held = max(1, held)
    cut = len(ordered) - held
    return ordered[:cut], ordered[cut:]
