from __future__ import annotations

from finsent.ingest.dedup import normalize_title, shingles, title_key, url_key
from finsent.ingest.dedup.keys import normalized_shingles


def test_normalize_title_folds_case_punctuation_and_space() -> None:
    assert normalize_title("  FED Holds Rates Steady --  Signals Patience!! ") == (
        "fed holds rates steady signals patience"
    )
    assert normalize_title("U.S. stocks: Apple’s “big” day") == "us stocks apples big day"
    assert title_key("Fed holds rates steady, signals patience") == title_key(
        "fed holds rates steady - SIGNALS PATIENCE."
    )
    assert url_key("https://a.example/x") != url_key("https://a.example/y")
    assert url_key(" https://a.example/x ") == url_key("https://a.example/x")


def test_shingles_are_content_words_and_their_pairs() -> None:
    # Stopwords go, a plural "s" is cut, and adjacent pairs make the wording count.
    assert shingles("The Fed holds rates") == {"fed", "hold", "rate", "fed hold", "hold rate"}
    title = "Fed holds rates steady, signals patience"
    assert shingles(title) == normalized_shingles(normalize_title(title), "", 4, 30)


def test_only_short_titles_lean_on_the_body() -> None:
    body = "Shares of Nvidia slumped in early trade after export curbs were widened to more chips."
    assert len(shingles("Market update", body)) > len(shingles("Market update"))
    long_title = "Fed holds rates steady, signals patience"
    assert shingles(long_title, body) == shingles(long_title)
