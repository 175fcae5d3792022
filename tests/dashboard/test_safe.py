"""Feed text made safe for the pages: escaped, highlighted, linked only to web URLs, and
exported without spreadsheet formulas."""

from __future__ import annotations

import html
import io

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from finsent.dashboard.safe import csv_bytes, escape_text, headline_html, highlight

XSS = "<script>alert(1)</script>"


@given(st.text(alphabet=st.characters(min_codepoint=32, blacklist_categories=("Cs",))))
def test_escaped_text_reads_as_itself_and_holds_no_markup(text: str) -> None:
    escaped = escape_text(text)

    assert html.unescape(escaped) == text.replace("\x7f", " ")
    # Nothing left that HTML or Markdown would read as syntax.
    assert not set(escaped) & set("<>\"'`*_[]()|~$\\")
    assert "&" not in escaped.replace("&#", "")


def test_escape_text_neutralizes_html_markdown_and_control_characters() -> None:
    assert escape_text(XSS) == "&#60;script&#62;alert&#40;1&#41;&#60;&#47;script&#62;"
    assert "[" not in escape_text("[click](javascript:alert(1))")
    assert "$" not in escape_text("$x^2$ and **bold**")
    assert escape_text("a\nb\tc") == "a b c"


def test_highlight_marks_whole_attended_words_only() -> None:
    marked = highlight("Loss warning: Acme's losses <b>widen</b>", ["loss", "widen", "<b>"])

    assert marked.startswith("<mark>Loss</mark> warning")
    assert "losses" in marked and "<mark>losses</mark>" not in marked  # whole words only
    assert "&#60;b&#62;<mark>widen</mark>&#60;&#47;b&#62;" in marked
    assert highlight(XSS, ["script"]).count("<mark>") == 2
    assert highlight("plain", []) == "plain"


def test_headline_html_links_only_safe_urls() -> None:
    line = headline_html(XSS, ["alert"], url="https://n.example/?a=1&b=2", meta="wire · -0.50")

    assert line.startswith("<div>&#60;script&#62;<mark>alert</mark>")
    assert 'href="https://n.example/?a=1&amp;b=2"' in line
    assert 'rel="noopener noreferrer nofollow"' in line
    assert "<small>wire · &#45;0&#46;50</small>" in line
    assert "href" not in headline_html("t", url="javascript:alert(1)")


def test_csv_export_disarms_spreadsheet_formulas() -> None:
    frame = pd.DataFrame(
        {
            "Title": ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "fine", XSS],
            "Score": [1, 2, 3, 4, 5, 6],
        }
    )

    back = pd.read_csv(io.BytesIO(csv_bytes(frame)))

    assert back["Title"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "fine",
        XSS,  # text, as in the table: a spreadsheet does not run HTML
    ]
    assert back["Score"].tolist() == [1, 2, 3, 4, 5, 6]  # numbers stay numbers
