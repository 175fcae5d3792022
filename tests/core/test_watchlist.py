"""The watchlist file: the shipped example loads, and every bad file is one line naming the file
and the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent.core.settings import ConfigFileError, Settings
from finsent.core.watchlist import (
    NO_WATCHLIST,
    WatchedCompany,
    Watchlist,
    WatchlistError,
    load_watchlist,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "watchlist.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchlist.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_loads() -> None:
    watchlist = load_watchlist(EXAMPLE)

    assert watchlist.companies[0] == WatchedCompany("ACME", "Acme Corp", ("Acme", "ACME Corp."))
    assert "META" in watchlist.tickers
    assert "ticker:ACME" in watchlist.keys


def test_no_file_or_an_empty_one_is_no_watchlist(tmp_path: Path) -> None:
    assert load_watchlist(None) is NO_WATCHLIST
    assert not load_watchlist(write(tmp_path, "# nothing yet\n"))
    assert load_watchlist(write(tmp_path, "companies: []\n")) == Watchlist()


def test_tickers_are_upper_cased_and_names_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path, "companies:\n  - {ticker: ' $brk.b ', name: ' Berkshire '}\n")
    assert load_watchlist(path).companies == (WatchedCompany("BRK.B", "Berkshire"),)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "companies:\n  - {ticker: ACME}\n  - {ticker: 'Acme Corp'}\n",
            "companies[1] (ticker 'Acme Corp') ticker: a ticker is 1 to 10 letters",
        ),
        (
            "companies:\n  - {ticker: ACME, nmae: Acme}\n",
            "companies[0] (ticker 'ACME') nmae: Extra inputs are not permitted",
        ),
        ("companies:\n  - {name: Acme}\n", "companies[0] ticker: Field required"),
        (
            "companies:\n  - {ticker: ACME, aliases: ['A']}\n",
            "companies[0] (ticker 'ACME') aliases: alias 'A' needs 2 to 200 characters",
        ),
        (
            "companies:\n  - {ticker: ACME}\n  - {ticker: acme}\n",
            "companies[1]: ticker ACME is already listed at companies[0]",
        ),
        (
            "companies:\n  - {ticker: ACME, aliases: [Acme]}\n  - {ticker: ACMX, aliases: [acme]}\n",
            "companies[1] (ticker 'ACMX'): alias 'acme' also names ACME",
        ),
        ("tickers: [ACME]\n", "tickers: Extra inputs are not permitted"),
        ("- ACME\n", "must hold a mapping with a 'companies' list"),
        ("companies: [\n", "is not valid YAML at line 2"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(WatchlistError) as info:
        load_watchlist(path)

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"watchlist {path}")
    assert fragment in message
    assert isinstance(info.value, ConfigFileError)  # so every command prints it as one line


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match=r"watchlist .*nowhere\.yaml cannot be read"):
        load_watchlist(tmp_path / "nowhere.yaml")


def test_the_setting_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_WATCHLIST_FILE", str(EXAMPLE))
    assert Settings().watchlist_file == EXAMPLE
    monkeypatch.setenv("FINSENT_WATCHLIST_FILE", "")
    assert Settings().watchlist_file is None
