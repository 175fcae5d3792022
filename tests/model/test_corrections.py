"""Corrections: what a stored correction must hold, the aliases it accepts, and the CSV of
``finsent labels import``/``export`` (every bad row named with its line, hostile text never a
crash)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.errors import UserError
from finsent.model.corrections import (
    CSV_COLUMNS,
    Correction,
    CorrectionError,
    ImportProblem,
    labelled_stories,
    normalize_sentiment,
    normalize_topic,
    parse_csv,
    read_csv_file,
    split_by_time,
    to_csv,
)
from finsent.model.data import sentiment_index, topic_index
from finsent.model.topics import TOPICS

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
STORED = {
    "s1": {
        "title": "Acme beats estimates",
        "sentiment": "positive",
        "topic": "Earnings",
        "model_version": "finsent-attn-1+test",
    },
}


def correction(**overrides: Any) -> Correction:
    values: dict[str, Any] = {
        "story_id": "s1",
        "text": "Acme beats estimates",
        "sentiment": "negative",
        "topic": None,
        "by": "ann",
        "at": NOW,
    }
    return Correction(**{**values, **overrides})


def parse(text: str, **kwargs: Any) -> tuple[list[Correction], list[ImportProblem]]:
    return parse_csv(text, default_by=kwargs.get("default_by", "ann"), now=NOW, stored=STORED)


# -- one correction -------------------------------------------------------------------------


def test_a_correction_is_its_labels_row() -> None:
    row = correction(topic="Earnings", note="guidance cut").row()
    assert row["sentiment"] == "negative" and row["topic"] == "Earnings"
    assert (row["origin"], row["note"], row["predicted_sentiment"]) == ("cli", "guidance cut", None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"story_id": "  "}, "story id: give the id of a scored story"),
        ({"story_id": "x" * 65}, "at most 64 characters"),
        ({"text": " "}, "story s1: its text is empty"),
        ({"text": "x" * 2001}, "text over 2000 characters"),
        ({"sentiment": None}, "set a sentiment, a topic, or both"),
        ({"sentiment": "bearish"}, "sentiment 'bearish' is not one of negative, neutral"),
        ({"topic": "Sports"}, "`finsent labels topics` lists them"),
        ({"by": ""}, "who: say who you are"),
        ({"by": "x" * 201}, "at most 200 characters"),
        ({"note": "x" * 2001}, "note over 2000 characters"),
        ({"at": datetime(2026, 3, 10)}, "its time has no time zone"),
        ({"origin": "email"}, "origin 'email' is not one of dashboard, cli, import"),
    ],
)
def test_a_wrong_field_is_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(CorrectionError, match=message.replace("(", r"\(")) as raised:
        correction(**overrides)
    assert isinstance(raised.value, UserError)  # the CLI prints it as one line


def test_a_topic_alone_is_a_correction() -> None:
    assert correction(sentiment=None, topic="Macro").topic == "Macro"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("neg", "negative"), (" Bearish ", "negative"), ("NEU", "neutral"), ("bullish", "positive")],
)
def test_sentiments_are_read_as_analysts_type_them(typed: str, meant: str) -> None:
    assert normalize_sentiment(typed) == meant


def test_topics_are_matched_without_case_or_extra_spaces() -> None:
    assert normalize_topic("m&a  |   investments") == "M&A | Investments"
    assert normalize_topic(" fed | central banks") == "Fed | Central Banks"
    assert all(normalize_topic(topic.upper()) == topic for topic in TOPICS)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_an_empty_sentiment_or_topic_leaves_it_as_it_was(empty: str | None) -> None:
    assert normalize_sentiment(empty) is None and normalize_topic(empty) is None


def test_an_unknown_sentiment_or_topic_is_one_clear_error() -> None:
    with pytest.raises(CorrectionError, match="sentiment 'meh' is not one of negative"):
        normalize_sentiment(" meh ")
    with pytest.raises(CorrectionError, match="topic 'Sports' .*`finsent labels topics`"):
        normalize_topic("Sports")


# -- CSV ------------------------------------------------------------------------------------


def test_a_stored_story_needs_only_its_id_and_a_label() -> None:
    [good], problems = parse("story_id,sentiment\ns1,neg\n")
    assert problems == []
    assert good == Correction(
        story_id="s1",
        text="Acme beats estimates",
        sentiment="negative",
        topic=None,
        by="ann",
        at=NOW,
        predicted_sentiment="positive",
        predicted_topic="Earnings",
        model_version="finsent-attn-1+test",
        origin="import",
    )


def test_a_row_says_who_and_when_itself() -> None:
    text = "story_id,text,topic,by,at\nx9,Oil slides,energy | oil,bo,2026-03-01T10:00:00+01:00\n"
    [good], _ = parse(text, default_by=None)
    assert (good.text, good.topic, good.by) == ("Oil slides", "Energy | Oil", "bo")
    assert good.at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC) and good.at.tzinfo is UTC
    [naive], _ = parse("story_id,sentiment,at\ns1,pos,2026-03-01 10:00\n")
    assert naive.at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # no zone given: UTC


def test_every_bad_row_is_named_with_its_line() -> None:
    text = (
        "story_id,text,sentiment,topic,at\n"  # line 1
        "s1,,meh,,\n"  # 2: unknown sentiment
        "s1,,,Sports,\n"  # 3: unknown topic
        ",Acme falls,neg,,\n"  # 4: no story id
        "nope,,neg,,\n"  # 5: not stored, no text
        "s1,,neg,,,extra\n"  # 6: a cell too many
        "s1,,neg,,yesterday\n"  # 7: not a time
        "s1,,,,\n"  # 8: nothing to set
        "\n"  # 9: blank: skipped
        's1,"two\nlines",neg,,0001-01-01T00:00:00+01:00\n'  # 10-11: a time before year 1 in UTC
        "s1,,pos,,\n"  # 12: good
    )
    good, problems = parse(text)
    assert [g.sentiment for g in good] == ["positive"]
    assert [(p.line, p.reason) for p in problems] == [
        (2, "sentiment 'meh' is not one of negative, neutral, positive"),
        (
            3,
            "topic 'Sports' is not one of the 20 analyst topics "
            "(`finsent labels topics` lists them)",
        ),
        (4, "story id: give the id of a scored story (at most 64 characters)"),
        (5, "story nope: no text, and no such stored story"),
        (6, "more cells than the header has columns"),
        (7, "at 'yesterday' is not an ISO 8601 time"),
        (8, "story s1: set a sentiment, a topic, or both"),
        (10, "at '0001-01-01T00:00:00+01:00' is not a time in UTC's range"),
    ]


def test_a_row_without_who_is_refused_when_no_default_is_given() -> None:
    _, [problem] = parse("story_id,sentiment\ns1,neg\n", default_by=None)
    assert problem == ImportProblem(2, "who: say who you are (--by NAME, at most 200 characters)")


@pytest.mark.parametrize(
    "text", ["", "story_id\ns1\n", "text,sentiment\nAcme,neg\n", "sentiment,topic\n"]
)
def test_a_header_without_story_id_and_a_label_column_is_one_error(text: str) -> None:
    with pytest.raises(CorrectionError, match="needs a header with story_id and sentiment"):
        parse(text)


def test_a_cell_too_large_for_csv_is_a_problem_not_a_crash() -> None:
    text = f"story_id,sentiment,note\ns1,neg,ok\ns1,pos,{'x' * 200_000}\ns1,neu,after\n"
    good, [problem] = parse(text)
    assert [g.sentiment for g in good] == ["negative"]
    assert problem.line == 3 and problem.reason.startswith("not CSV: ")


def test_to_csv_and_parse_csv_round_trip() -> None:
    rows = [
        correction(note='says "no", twice\nand more', predicted_sentiment="positive").row(),
        correction(
            story_id="s2",
            text="=HYPERLINK(1) Acme, Inc. +5%",
            sentiment=None,
            topic="Earnings",
            by="@bo",
            at=NOW + timedelta(hours=1),
            model_version="v2",
        ).row(),
    ]
    text = to_csv(rows)

    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert '"\'=HYPERLINK(1) Acme, Inc. +5%"' in text  # never runs as a spreadsheet formula
    read, problems = parse_csv(text, default_by=None, now=NOW, stored={})
    assert problems == []
    assert [r.row() for r in read] == [{**row, "origin": "import"} for row in rows]


def test_read_csv_file_names_a_missing_or_non_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(CorrectionError, match="no such file"):
        read_csv_file(tmp_path / "nope.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("story_id,text,sentiment\nx,Société Générale chute,neg\n".encode("latin-1"))
    with pytest.raises(CorrectionError, match="not UTF-8 text"):
        read_csv_file(latin)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbfstory_id,sentiment\ns1,neg\n")
    assert read_csv_file(bom) == "story_id,sentiment\ns1,neg\n"  # Excel's byte-order mark


@given(st.text())
def test_parse_csv_never_crashes_on_any_text(text: str) -> None:
    try:
        good, problems = parse(text)
    except CorrectionError as exc:
        assert "needs a header" in str(exc)
        return
    assert all(isinstance(g, Correction) for g in good)
    assert all(1 < p.line <= text.count("\n") + text.count("\r") + 1 for p in problems)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_parse_csv_never_crashes_on_any_rows_under_a_good_header(body: str) -> None:
    text = ",".join(CSV_COLUMNS) + "\n" + body
    good, problems = parse(text)
    assert all(g.sentiment or g.topic for g in good)
    assert all(p.reason for p in problems)


# -- training data --------------------------------------------------------------------------


def test_current_labels_become_examples_and_the_newest_are_held_out() -> None:
    current = {
        f"s{n}": {
            "text": f"story {n}",
            "sentiment": "negative" if n % 2 else None,
            "topic": "Macro",
            "at": NOW + timedelta(minutes=n),
        }
        for n in range(10)
    }
    stories = labelled_stories(current)
    assert [s.story_id for s in stories] == [f"s{n}" for n in range(10)]
    example = stories[1].example()
    assert example.sentiment == sentiment_index("negative")
    assert example.topic == topic_index("Macro")
    assert stories[0].example().sentiment is None

    train, held = split_by_time(list(reversed(stories)), 0.2)
    assert [s.story_id for s in held] == ["s8", "s9"]
    assert len(train) == 8
    _, one = split_by_time(stories[:2], 0.01)
    assert [s.story_id for s in one] == ["s1"]  # at least one held out once there are two
