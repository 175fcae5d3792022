"""``finsent labels``: correcting stories one by one and by CSV, against a temporary SQLite store
holding two scored stories."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from support.records import scored_item
from typer.testing import CliRunner

from finsent.app.cli import app
from finsent.model.topics import TOPICS
from finsent.runtime.store import Commit, Store, labels

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    made = Store(url)
    stories = [
        scored_item(id="s1", title="Acme beats estimates", sentiment="positive", topic="Earnings"),
        scored_item(id="s2", title="=Oil slides", sentiment="neutral", model_version="v1"),
    ]
    made.commit(Commit(stage="scorer", scored=stories))
    return made


def one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def export(*options: str) -> list[dict[str, str]]:
    result = runner.invoke(app, ["labels", "export", *options])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- add --------------------------------------------------------------------------------------


def test_add_keeps_the_models_call_beside_the_correction(store: Store) -> None:
    add = ["labels", "add", "s1", "--sentiment", "bearish", "--by", "ann", "--note", "guidance"]

    result = runner.invoke(app, add)

    assert result.exit_code == 0, result.output
    assert result.output == "labelled s1: sentiment positive → negative by ann\n"
    [row] = store.query(labels)
    assert (row["story_id"], row["text"], row["sentiment"], row["topic"]) == (
        "s1",
        "Acme beats estimates",
        "negative",
        None,
    )
    assert (row["predicted_sentiment"], row["predicted_topic"], row["model_version"]) == (
        "positive",
        "Earnings",
        "test",
    )
    assert (row["by"], row["note"], row["origin"]) == ("ann", "guidance", "cli")


def test_a_later_correction_wins_and_the_history_is_kept(store: Store) -> None:
    first = ["labels", "add", "s1", "--sentiment", "neg", "--topic", "m&a | investments"]
    assert runner.invoke(app, [*first, "--by", "ann"]).exit_code == 0
    second = runner.invoke(app, ["labels", "add", "s1", "--sentiment", "neutral", "--by", "bo"])
    assert second.output == "labelled s1: sentiment positive → neutral by bo\n"

    [now] = export()
    assert (now["sentiment"], now["topic"], now["by"]) == ("neutral", "M&A | Investments", "bo")
    history = export("--history")
    assert [(r["sentiment"], r["topic"], r["by"]) for r in history] == [
        ("negative", "M&A | Investments", "ann"),
        ("neutral", "", "bo"),
    ]
    listed = runner.invoke(app, ["labels", "list"]).output.splitlines()
    assert listed[0].endswith("s1  sentiment positive → neutral  by bo (cli)")
    assert "topic Earnings → M&A | Investments  by ann (cli)" in listed[1]
    [latest] = json.loads(runner.invoke(app, ["labels", "list", "--json", "--limit", "1"]).output)
    assert (latest["sentiment"], latest["by"], latest["at"][-6:]) == ("neutral", "bo", "+00:00")


def test_a_story_the_store_does_not_hold_needs_its_text(store: Store) -> None:
    add = ["labels", "add", "gone", "--topic", "macro", "--by", "ann"]
    result = runner.invoke(app, add)
    assert result.exit_code == 1
    assert one_error_line(result.output) == (
        "error: no scored story 'gone' in the store; give its headline with --text"
    )

    result = runner.invoke(app, [*add, "--text", "Rates rise again"])

    assert (result.exit_code, result.output) == (0, "labelled gone: topic Macro by ann\n")
    [row] = store.query(labels)
    assert (row["text"], row["predicted_topic"], row["model_version"]) == (
        "Rates rise again",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--topic", "Sports"], "topic 'Sports' is not one of the 20 analyst topics "),
        (["--sentiment", "meh"], "sentiment 'meh' is not one of negative, neutral, positive"),
        ([], "give --sentiment, --topic, or both"),
        (["--sentiment", "neg", "--text", "Other"], "in the store with another headline"),
    ],
)
def test_add_refuses_in_one_line(store: Store, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["labels", "add", "s1", "--by", "ann", *options])
    assert result.exit_code == 1
    assert message in one_error_line(result.output)
    assert store.query(labels) == []


def test_an_unknown_topic_says_how_to_list_them(store: Store) -> None:
    result = runner.invoke(app, ["labels", "add", "s1", "--topic", "Sports", "--by", "ann"])
    assert "`finsent labels topics` lists them" in result.output
    topics = runner.invoke(app, ["labels", "topics"])
    assert topics.output.splitlines() == list(TOPICS)


# -- import -----------------------------------------------------------------------------------


BAD_ROWS = (
    "story_id,text,sentiment,topic,at\n"  # 1
    "s1,,neg,,\n"  # 2: good
    "s1,,meh,,\n"  # 3: unknown sentiment
    "s2,,,Sports,\n"  # 4: unknown topic
    ",Acme falls,neg,,\n"  # 5: no story id
    "gone,,neg,,\n"  # 6: not stored, no text
    "s2,,pos,,,surplus\n"  # 7: a cell too many
    "s2,,pos,,last tuesday\n"  # 8: not a time
    "gone,Rates rise,,Macro,2026-03-01T09:00:00Z\n"  # 9: good
)
BAD_LINES = [
    ("3", "sentiment 'meh' is not one of negative, neutral, positive"),
    ("4", "topic 'Sports' is not one of the 20 analyst topics"),
    ("5", "story id: give the id of a scored story"),
    ("6", "story gone: no text, and no such stored story"),
    ("7", "more cells than the header has columns"),
    ("8", "at 'last tuesday' is not an ISO 8601 time"),
]


def test_an_import_with_bad_rows_names_each_and_imports_nothing(
    store: Store, tmp_path: Path
) -> None:
    file = write(tmp_path / "fixes.csv", BAD_ROWS)

    result = runner.invoke(app, ["labels", "import", file, "--by", "ann"])

    assert result.exit_code == 1
    assert result.stdout == ""
    *problems, summary = result.stderr.splitlines()
    for problem, (line, reason) in zip(problems, BAD_LINES, strict=True):
        assert problem.startswith(f"{file}:{line}: {reason}")
    assert summary == (
        f"error: 6 bad rows in {file}, nothing imported: fix them, or give --skip-bad to "
        "import the 2 good ones"
    )
    assert store.query(labels) == []


def test_skip_bad_imports_the_good_rows_and_lists_the_bad(store: Store, tmp_path: Path) -> None:
    file = write(tmp_path / "fixes.csv", BAD_ROWS)

    result = runner.invoke(app, ["labels", "import", file, "--by", "ann", "--skip-bad"])

    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 2 corrections; 6 bad rows skipped\n"
    assert len(result.stderr.splitlines()) == 6
    rows = sorted(store.query(labels), key=lambda r: r["story_id"])
    assert [(r["story_id"], r["text"], r["sentiment"], r["topic"]) for r in rows] == [
        ("gone", "Rates rise", None, "Macro"),
        ("s1", "Acme beats estimates", "negative", None),
    ]
    assert {(r["by"], r["origin"]) for r in rows} == {("ann", "import")}
    assert rows[1]["predicted_sentiment"] == "positive"  # filled from the stored story


def test_a_dry_run_checks_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    file = write(tmp_path / "fixes.csv", "story_id,sentiment,by\ns1,neg,ann\ns2,pos,ann\n")
    result = runner.invoke(app, ["labels", "import", file, "--dry-run"])
    assert (result.exit_code, result.output) == (0, "would import 2 corrections\n")
    assert store.query(labels) == []


def test_a_row_without_who_needs_by(store: Store, tmp_path: Path) -> None:
    file = write(tmp_path / "fixes.csv", "story_id,sentiment\ns1,neg\n")
    result = runner.invoke(app, ["labels", "import", file])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{file}:2: who: say who you are (--by NAME, at most 200 characters)",
        f"error: 1 bad row in {file}, nothing imported: fix them, or give --skip-bad to "
        "import the 0 good ones",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("story_id,text\ns1,Acme\n", "the CSV needs a header with story_id and sentiment"),
        ("id,sentiment\ns1,neg\n", "the CSV needs a header with story_id and sentiment"),
        ("story_id,sentiment\n", "has a header but no rows"),
        ("Société Générale chute".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_an_unreadable_file_is_one_line_naming_it(
    store: Store, tmp_path: Path, content: str | bytes, message: str
) -> None:
    file = tmp_path / "fixes.csv"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8")

    result = runner.invoke(app, ["labels", "import", str(file), "--by", "ann"])

    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith(f"error: {file}") and message in line


def test_a_missing_file_is_one_line(store: Store, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = runner.invoke(app, ["labels", "import", str(missing)])
    assert result.exit_code == 1
    assert one_error_line(result.output) == f"error: {missing}: no such file"


def test_too_large_a_file_is_refused_before_it_is_read(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finsent.app.cli.labels as labels_cli

    file = write(tmp_path / "big.csv", "story_id,sentiment,by\n" + "s1,neg,ann\n" * 11)
    monkeypatch.setattr(labels_cli, "MAX_IMPORT_ROWS", 10)
    rows = runner.invoke(app, ["labels", "import", file])
    assert rows.exit_code == 1
    assert one_error_line(rows.output) == (
        f"error: {file} has 11 rows; import at most 10 at a time (split it)"
    )
    monkeypatch.setattr(labels_cli, "MAX_IMPORT_BYTES", 100)
    size = runner.invoke(app, ["labels", "import", file])
    assert size.exit_code == 1
    assert "import at most 50 MB at a time" in one_error_line(size.output)
    assert store.query(labels) == []


def test_export_then_import_round_trips_and_a_second_import_adds_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for story, options in (
        ("s1", ["--sentiment", "neg", "--note", 'says "cut", twice']),
        ("s2", ["--topic", "energy | oil"]),
        ("s1", ["--topic", "Macro"]),
    ):
        assert runner.invoke(app, ["labels", "add", story, *options, "--by", "ann"]).exit_code == 0
    current, history = tmp_path / "current.csv", tmp_path / "history.csv"
    wrote = runner.invoke(app, ["labels", "export", "--out", str(current)])
    assert wrote.output == f"wrote 2 stories' labels to {current}\n"
    runner.invoke(app, ["labels", "export", "--history", "--out", str(history)])
    assert "'=Oil slides" in current.read_text(encoding="utf-8")  # no spreadsheet formula

    # Into an empty store: what comes out is what went in.
    monkeypatch.setenv("FINSENT_STORE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    result = runner.invoke(app, ["labels", "import", str(history)])
    assert (result.exit_code, result.output) == (0, "imported 3 corrections\n")
    assert export("--history") == list(csv.DictReader(history.open(encoding="utf-8")))
    assert export() == list(csv.DictReader(current.open(encoding="utf-8")))
    stored = {
        r["story_id"]: r["text"] for r in Store(f"sqlite:///{tmp_path / 'other.db'}").query(labels)
    }
    assert stored == {"s1": "Acme beats estimates", "s2": "=Oil slides"}  # the quote taken off

    again = runner.invoke(app, ["labels", "import", str(history)])
    assert (again.exit_code, again.output) == (0, "imported 0 corrections; 3 already stored\n")
