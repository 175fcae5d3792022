"""``finsent labels add|import|export|list|topics``: analysts' corrections of the model's calls.

Every correction is kept in the store's ``labels`` table; a story's label for a task is its
latest correction that sets it. ``finsent retrain`` trains on them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from finsent.app.cli.alerts import JSON_OPTION, open_store
from finsent.app.cli.common import MODEL_PANEL, fail, new_app, write_or_echo

if TYPE_CHECKING:
    from finsent.model.corrections import Correction
    from finsent.runtime.store import Store

labels_app = new_app("Correct the model's calls: add, import, export and list analysts' labels.")

# An import is a person's spreadsheet, not a dataset: bound what one command reads and holds.
MAX_IMPORT_BYTES = 50 * 1024 * 1024
MAX_IMPORT_ROWS = 100_000
ID_CHUNK = 500  # ids per IN (...) query: well under every backend's bound on parameters


def stored_stories(store: Store, story_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The scored stories of these ids that the store holds, by id."""
    from finsent.runtime.store import scored_items

    wanted = sorted(set(story_ids))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), ID_CHUNK):
        chunk = wanted[start : start + ID_CHUNK]
        for row in store.query(scored_items, scored_items.c.id.in_(chunk)):
            found[row["id"]] = row
    return found


def counted(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def changes(row: Mapping[str, Any]) -> str:
    """What a correction sets, beside the model's call: ``sentiment positive → negative``."""
    said = []
    for task in ("sentiment", "topic"):
        new, old = row[task], row[f"predicted_{task}"]
        if new is not None:
            said.append(f"{task} {old} → {new}" if old else f"{task} {new}")
    return ", ".join(said)


@labels_app.command("add")
def labels_add(
    story_id: Annotated[
        str, typer.Argument(help="The story's id (the dashboard's story tables show it).")
    ],
    by: Annotated[str, typer.Option(help="Who corrects it.")],
    sentiment: Annotated[
        str | None,
        typer.Option(help="Its sentiment: negative, neutral or positive (neg, bearish… too)."),
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Its topic, any case (`finsent labels topics` lists them).")
    ] = None,
    note: Annotated[str, typer.Option(help="Why, for whoever reads it later.")] = "",
    text: Annotated[
        str | None,
        typer.Option(help="The headline, for a story the store does not hold (e.g. pruned)."),
    ] = None,
) -> None:
    """Correct one story's sentiment, topic, or both; the model's call is kept beside it."""
    from finsent.model.corrections import Correction, normalize_sentiment, normalize_topic

    new_sentiment, new_topic = normalize_sentiment(sentiment), normalize_topic(topic)
    if new_sentiment is None and new_topic is None:
        fail("give --sentiment, --topic, or both")
    store = open_store()
    story = stored_stories(store, [story_id]).get(story_id)
    if story is None and text is None:
        fail(f"no scored story {story_id!r} in the store; give its headline with --text")
    if story is not None and text is not None and text.strip() != story["title"].strip():
        fail(f"story {story_id} is in the store with another headline: leave --text out")
    made = Correction(
        story_id=story_id,
        text=story["title"] if story is not None else str(text),
        sentiment=new_sentiment,
        topic=new_topic,
        by=by,
        at=datetime.now(UTC),
        note=note,
        predicted_sentiment=story["sentiment"] if story is not None else None,
        predicted_topic=story["topic"] if story is not None else None,
        model_version=story["model_version"] if story is not None else None,
        origin="cli",
    )
    store.add_labels([made.row()])
    typer.echo(f"labelled {story_id}: {changes(made.row())} by {by}")


def _rows_and_ids(text: str) -> tuple[int, set[str]]:
    """How many rows a corrections CSV has and the story ids they name, before it is parsed
    against the stories they name (parse_csv names any row that is not CSV)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, ids = 0, set()
    try:
        header = [name.strip() for name in next(reader, [])]
        column = header.index("story_id") if "story_id" in header else len(header)
        for values in reader:
            rows += bool(values)
            if column < len(values):
                ids.add(values[column].strip())
    except csv.Error:
        pass
    return rows, ids


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two corrections the same one (an export imported twice)."""
    return tuple(row[k] for k in ("story_id", "at", "by", "sentiment", "topic", "note", "text"))


def _not_stored_yet(store: Store, made: Sequence[Correction]) -> list[Correction]:
    """The corrections that neither the store nor an earlier row of the file already hold."""
    wanted = sorted({c.story_id for c in made})
    seen: set[tuple[Any, ...]] = set()
    for start in range(0, len(wanted), ID_CHUNK):
        seen |= {_key(r) for r in store.label_history(story_ids=wanted[start : start + ID_CHUNK])}
    fresh = []
    for correction in made:
        key = _key(correction.row())
        if key not in seen:
            seen.add(key)
            fresh.append(correction)
    return fresh


@labels_app.command("import")
def labels_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="A UTF-8 CSV with a header: story_id, sentiment and/or topic; optionally "
            "text (for a story the store does not hold), by, at, note.",
            dir_okay=False,
        ),
    ],
    by: Annotated[str | None, typer.Option(help="Who, for the rows without a 'by' cell.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and say what would be imported.")
    ] = False,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Import the good rows even if some are bad (listed)."),
    ] = False,
) -> None:
    """Import corrections from a CSV (as `labels export` writes it): all or none, unless
    --skip-bad. Each bad row is named on stderr as FILE:LINE: reason; rows already stored are
    skipped, so importing a file twice adds nothing."""
    from finsent.model.corrections import CorrectionError, parse_csv, read_csv_file

    try:
        size = file.stat().st_size
    except FileNotFoundError:
        fail(f"{file}: no such file")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    if size > MAX_IMPORT_BYTES:
        fail(f"{file} is {size / 2**20:.0f} MB; import at most 50 MB at a time (split it)")
    text = read_csv_file(file)
    rows, ids = _rows_and_ids(text)
    if rows > MAX_IMPORT_ROWS:
        fail(f"{file} has {rows} rows; import at most {MAX_IMPORT_ROWS} at a time (split it)")
    store = open_store()
    try:
        made, problems = parse_csv(
            text, default_by=by, now=datetime.now(UTC), stored=stored_stories(store, ids)
        )
    except CorrectionError as exc:  # its header
        fail(f"{file}: {exc}")
    if not made and not problems:
        fail(f"{file} has a header but no rows")
    for problem in problems:
        typer.echo(f"{file}:{problem.line}: {problem.reason}", err=True)
    if problems and not skip_bad:
        fail(
            f"{counted(len(problems), 'bad row')} in {file}, nothing imported: fix them, or "
            f"give --skip-bad to import the {counted(len(made), 'good one')}"
        )
    fresh = _not_stored_yet(store, made)
    if not dry_run:
        store.add_labels([c.row() for c in fresh])
    said = [f"{'would import' if dry_run else 'imported'} {counted(len(fresh), 'correction')}"]
    if len(made) > len(fresh):
        said.append(f"{len(made) - len(fresh)} already stored")
    if problems:
        said.append(f"{counted(len(problems), 'bad row')} skipped")
    typer.echo("; ".join(said))


@labels_app.command("export")
def labels_export(
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (default: standard output).")
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Every correction, oldest first, instead of each story's labels."
        ),
    ] = False,
) -> None:
    """Each corrected story's labels now (its corrections folded), or every correction, as
    CSV that `labels import` reads back."""
    from finsent.model.corrections import to_csv
    from finsent.runtime.store.labels import current_labels

    rows = open_store().label_history()
    if not history:
        rows = list(current_labels(rows).values())
    what = "corrections" if history else "stories' labels"
    write_or_echo(to_csv(rows), out, f"{len(rows)} {what}")


def label_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored correction as plain JSON values (its time in ISO 8601 UTC)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def label_line(row: Mapping[str, Any]) -> str:
    """One correction as a line of ``finsent labels list``."""
    note = f"  {row['note']}" if row["note"] else ""
    return (
        f"{row['at']:%Y-%m-%d %H:%M}  {row['story_id']}  {changes(row)}  "
        f"by {row['by']} ({row['origin']}){note}"
    )


@labels_app.command("list")
def labels_list(
    limit: Annotated[int, typer.Option(min=1, help="How many, the latest first.")] = 20,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """The latest corrections: the story, what changed from the model's call, who and when."""
    rows = open_store().label_history()[-limit:][::-1]
    if as_json:
        typer.echo(json.dumps([label_record(r) for r in rows], indent=2, ensure_ascii=False))
    elif not rows:
        typer.echo("no corrections")
    else:
        typer.echo("\n".join(label_line(row) for row in rows))


@labels_app.command("topics")
def labels_topics() -> None:
    """The 20 analyst topics a story's topic can be set to."""
    from finsent.model.topics import TOPICS

    typer.echo("\n".join(TOPICS))


def register(app: typer.Typer) -> None:
    app.add_typer(labels_app, name="labels", rich_help_panel=MODEL_PANEL)
