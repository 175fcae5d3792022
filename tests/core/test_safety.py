"""The two link contracts: the dashboard's refusing one and the messages' repairing one."""

from __future__ import annotations

import pytest

from finsent.core.safety import (
    MAX_URL_CHARS,
    encoded_web_link,
    spreadsheet_cell,
    strict_web_link,
)

NOT_WEB_LINKS = (
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox",
    "/relative/path",
    "//news.example/no-scheme",
    "https://[bad",  # urlsplit refuses it
    "",
)


def test_strict_web_link_passes_plain_web_links_unchanged() -> None:
    assert strict_web_link("https://news.example/a?b=1#c") == "https://news.example/a?b=1#c"
    assert strict_web_link("http://news.example") == "http://news.example"
    assert strict_web_link("  https://news.example/x  ") == "https://news.example/x"


@pytest.mark.parametrize(
    "bad",
    [
        *NOT_WEB_LINKS,
        'https://news.example/"onmouseover="alert(1)',
        "https://news.example/\nx",
        "https://news.example/a b",
        "https://news.example/<b>",
        "https://news.example/`x`",
        None,
        42,
    ],
)
def test_strict_web_link_refuses_rather_than_repairs(bad: object) -> None:
    assert strict_web_link(bad) is None


def test_encoded_web_link_percent_encodes_what_could_break_a_link() -> None:
    assert encoded_web_link('https://x.test/a b"<>|') == "https://x.test/a%20b%22%3C%3E%7C"
    # The URL's own syntax and existing escapes are kept.
    kept = "https://x.test/p;q?a=1&b=%2F#frag"
    assert encoded_web_link(kept) == kept
    assert encoded_web_link("https://x.test/\nx") == "https://x.test/%0Ax"


@pytest.mark.parametrize("bad", [*NOT_WEB_LINKS, "https://x.test/" + "a" * MAX_URL_CHARS])
def test_encoded_web_link_gives_empty_for_what_it_cannot_repair(bad: str) -> None:
    assert encoded_web_link(bad) == ""


def test_the_two_contracts_differ_on_a_repairable_link() -> None:
    link = "https://x.test/a b"
    assert strict_web_link(link) is None
    assert encoded_web_link(link) == "https://x.test/a%20b"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_cell_quotes_what_would_run_as_a_formula(text: str) -> None:
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["fine", "a=b", "", -2.5, 3, None])
def test_spreadsheet_cell_leaves_other_values_alone(value: object) -> None:
    assert spreadsheet_cell(value) == value


def test_the_secret_registry_scrubs_every_spelling() -> None:
    from finsent.core.safety import SecretRegistry

    registry = SecretRegistry()
    registry.register(
        "k3y/with+odd=chars", "https://hooks.slack.test/services/T0/B0/abcdefghijklmnop"
    )
    text = (
        "GET https://api.test/?apiKey=k3y%2Fwith%2Bodd%3Dchars 200; "
        "header k3y/with+odd=chars; hook /services/T0/B0/abcdefghijklmnop"
    )
    assert registry.scrub(text) == "GET https://api.test/?apiKey=*** 200; header ***; hook ***"
