from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.watchlist import WatchedCompany, Watchlist, load_watchlist
from finsent.ingest.tickers import TICKER_RE, company_index, normalize_symbol, tag_tickers


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("$AAPL jumps", {"AAPL": 1.0}),
        ("Shares of Apple Inc. rose", {"AAPL": 1.0}),
        ("Apple's iPhone sales slump in China", {"AAPL": 1.0}),
        ("NASDAQ:MSFT slips after the bell", {"MSFT": 1.0}),
        ("NYSE: IBM beats estimates", {"IBM": 1.0}),
        ("Nasdaq: AAPL shares climb", {"AAPL": 1.0}),
        ("$BRK.B hits a record", {"BRK.B": 1.0}),
        ("$BRK-B hits a record", {"BRK.B": 1.0}),  # the class-share spelling maps to one key
        ("Procter & Gamble raises its outlook", {"PG": 1.0}),
        ("AT&T's network goes down", {"T": 1.0}),
        ("Nestle cuts prices", {"NESN.SW": 1.0}),  # accents optional; home listing, no US one
        ("Google faces EU probe", {"GOOGL": 1.0}),  # curated alias
        ("Target Corp cuts its forecast", {"TGT": 1.0}),
        ("Alphabet and Meta Platforms lead gains", {"GOOGL": 1.0, "META": 1.0}),
        ("Apple Hospitality REIT sells a hotel", {"APLE": 1.0}),  # the longest name wins
    ],
)
def test_title_mentions(title: str, expected: dict[str, float]) -> None:
    assert tag_tickers(title) == expected


@pytest.mark.parametrize(
    "title",
    [
        "Stocks drift as traders await the jobs report",
        "Fed officials see $5 billion in losses",
        "Deal valued at $1.2bn and US$300m; $US10bn pledged",
        "Nasdaq falls 2% as tech slides",  # the index, not the exchange operator
        "Target hit as analysts cut forecasts",  # a common word alone is not a company
        "Fox News ratings climb",
        "apple pie prices rise with inflation",  # lower case is not a name
        "Ibm and bp logos",  # all-capital names only match in capitals
    ],
)
def test_no_company(title: str) -> None:
    assert tag_tickers(title) == {}


def test_body_only_mentions_weigh_half_and_known_tickers_count_fully() -> None:
    tags = tag_tickers(
        "Markets wrap: tech leads", "Microsoft and $NVDA led gains.", known=["tsla", "<bad>"]
    )
    assert tags == {"TSLA": 1.0, "MSFT": 0.5, "NVDA": 0.5}
    assert list(tags) == ["TSLA", "MSFT", "NVDA"]  # relevance first, then symbol


def test_title_mention_beats_body_mention() -> None:
    assert tag_tickers("$AAPL jumps", "Apple Inc. said ...") == {"AAPL": 1.0}


def test_foreign_listing_maps_to_the_company_symbol() -> None:
    assert tag_tickers("Vodafone (LSE:VOD) sells its Spanish unit") == {"VOD": 1.0}
    assert tag_tickers("TSX:RY beats on earnings") == {"RY": 1.0}  # its NYSE listing


def test_normalize_symbol() -> None:
    assert normalize_symbol(" $aapl ") == "AAPL"
    assert normalize_symbol("brk.b") == "BRK.B"
    assert normalize_symbol("<script>") is None
    assert normalize_symbol("") is None
    assert normalize_symbol("7203") is None


def test_index_symbols_are_valid_tickers() -> None:
    index = company_index()
    assert index.names > 1000
    assert all(TICKER_RE.match(symbol) for symbol in index.symbols)


@given(st.text(max_size=200), st.text(max_size=200))
def test_tags_are_valid_and_ordered(title: str, body: str) -> None:
    tags = tag_tickers(title, body)
    assert all(TICKER_RE.match(symbol) for symbol in tags)
    assert set(tags.values()) <= {0.5, 1.0}
    assert list(tags) == sorted(tags, key=lambda s: (-tags[s], s))


def test_tagging_is_fast() -> None:
    company_index()
    headlines = [
        f"{name} shares {verb} after {event} ({n})"
        for n, (name, verb, event) in enumerate(
            zip(
                ["Apple Inc.", "Stocks", "$TSLA", "NYSE: IBM", "Bank of America", "Oil"] * 1700,
                ["jump", "fall", "slide", "rally"] * 2550,
                ["earnings", "a downgrade", "the Fed decision", "guidance"] * 2550,
                strict=False,
            )
        )
    ][:10_000]
    start = time.perf_counter()
    for headline in headlines:
        tag_tickers(headline)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"10,000 headlines took {elapsed:.2f}s"


def test_full_width_and_invisible_forms_read_as_their_ascii() -> None:
    assert tag_tickers("\uff04\uff21\uff21\uff30\uff2c jumps") == {"AAPL": 1.0}
    assert tag_tickers("Shares of $MS\u200bFT rise") == {"MSFT": 1.0}


def test_known_symbols_keeps_only_what_the_index_knows() -> None:
    from finsent.ingest.tickers import known_symbols

    assert known_symbols(["aapl", "ZZZZQX", "$MSFT", "AAPL", "<b>"]) == ("AAPL", "MSFT")


# -- the watchlist ----------------------------------------------------------------------------

WATCHLIST = Watchlist(
    (
        WatchedCompany("ACME", "Acme Corp", ("ACME Corp.", "Roadrunner Traps")),
        WatchedCompany("ZETA", aliases=("ZETA",)),  # all capitals: only in capitals
        WatchedCompany("SHOP", aliases=("Shell",)),  # a built-in name, taken over
    )
)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Acme shares plunge", {"ACME": 1.0}),  # the name, stripped of "Corp"
        ("Acme's warehouse burns", {"ACME": 1.0}),
        ("ACME Corp. misses estimates", {"ACME": 1.0}),  # an alias as written
        ("Roadrunner Traps recalled", {"ACME": 1.0}),
        ("ZETA raises guidance", {"ZETA": 1.0}),
        ("Shell sells a refinery", {"SHOP": 1.0}),  # the watchlist wins a name
        ("Apple and Acme team up", {"AAPL": 1.0, "ACME": 1.0}),  # the built-in index stays
    ],
)
def test_the_watchlist_tags_its_names_and_aliases(title: str, expected: dict[str, float]) -> None:
    assert tag_tickers(title, watchlist=WATCHLIST) == expected


@pytest.mark.parametrize(
    "title",
    [
        "acme shares plunge",  # lower case is not a name
        "Zeta raises guidance",  # an all-capitals alias matches only in capitals
        "Acmeville floods",  # whole words only
        "roadrunner traps recalled",
    ],
)
def test_the_watchlist_keeps_the_case_and_word_rules(title: str) -> None:
    assert tag_tickers(title, watchlist=WATCHLIST) == {}


def test_the_watchlist_touches_no_other_index() -> None:
    assert tag_tickers("Acme shares plunge") == {}
    assert tag_tickers("Shell sells a refinery") == {"SHEL": 1.0}
    assert company_index(WATCHLIST) is company_index(WATCHLIST)  # built once per watchlist
    assert "ACME" not in company_index().symbols


def test_a_source_may_state_a_watchlist_ticker() -> None:
    from finsent.ingest.tickers import known_symbols

    assert known_symbols(["acme", "AAPL"]) == ("AAPL",)
    assert known_symbols(["acme", "AAPL"], WATCHLIST) == ("ACME", "AAPL")


def test_the_example_watchlist_tags_its_companies() -> None:
    example = load_watchlist(Path(__file__).resolve().parents[2] / "examples" / "watchlist.yaml")
    assert tag_tickers("Acme shares plunge", watchlist=example) == {"ACME": 1.0}
    assert tag_tickers("Instagram outage hits millions", watchlist=example) == {"META": 1.0}
