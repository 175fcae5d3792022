"""Ticker tagging: which listed companies a headline and its body talk about, as of its date.

Three kinds of evidence, all case-aware:

* cashtags: ``$AAPL``, ``$BRK.B`` (upper-case letters only, so money such as ``$5`` or
  ``$1.2bn`` never matches);
* exchange-prefixed symbols: ``NASDAQ:AAPL``, ``NYSE: IBM``, ``(LSE:VOD)``, ``TSX:RY``;
* company names from the package's company table (``data/company_aliases.csv.gz``, built by
  ``scripts/build_company_aliases.py`` from point-in-time listings: the US lists of early 2023
  and of now, the S&P 500 membership history, non-US large caps), matched on whole tokens with
  a word trie, longest match first.

Tickers get reused (SI was Silvergate in 2023 and is Shoulder Innovations now), so every name,
symbol and listing form in the table holds only within its validity dates: a story is tagged as
of its publish time (``published_at``), and without one as of the table's latest lists.

Every company gets one symbol, so the same company tagged from its name, a cashtag, a share
class or a foreign listing lands on one aggregate key: the US listing (NYSE/NASDAQ, Yahoo style
without an exchange suffix) when it has one, else its home listing in Yahoo style (``SIE.DE``).
Symbols must match ``^[A-Z][A-Z0-9.\\-]{0,9}$``, so purely numeric listings are left out.

How names become matchable (the table's builder applies the rules and records a guard):

* a parenthesised remark and a leading "The" are dropped, then trailing legal suffixes
  (Inc, Corp, plc, AG, SE, Ltd, Co, Company, Holdings, Group, SA, NV, ...): "Apple Inc." is
  matched as "Apple"; headline short forms drop a trailing "Bank", "Financial", "Capital", ...
  ("First Republic", "SVB", "Silvergate") where no other company's name starts so;
* an alias made of ordinary words (English words, person names, places, and
  ``COMMON_WORD_NAMES``: Target, Block, Fox, Gates, ...) only matches when a legal suffix
  follows it in the text ("Target Corp" yes, "target" or "Target" alone no), unless the company
  is large enough to own the word (Apple, Visa, General Motors);
* a name shared by several companies at once goes to the single one with a US listing, else
  it is dropped as ambiguous;
* the text's first matched token must carry a capital letter (or be a digit, as in "3M"), and
  abbreviations such as "IBM" or "SVB" match only in capitals, so "apple pie" or "bp" never
  count.

A company without a ticker can still count by its name (``tag_entities``'s ``companies``):
capitalised words right before a strong company word ("Bank", "Airlines", "Inc", "plc", ...)
that no table name covers become a name slug (``silicon-valley-bank``), a few per story.

A watchlist (``finsent.core.watchlist``) adds the analyst's own companies: its names go through
the same stripping as the package's, its aliases are matched as written (like the curated
ones), under the same case rules and with no date limits; where a watchlist name or alias and a
built-in one are the same words, the watchlist's ticker wins. Its tickers are known symbols, so
a source may state them.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from finsent.core.watchlist import NO_WATCHLIST, Watchlist

__all__ = [
    "COMMON_WORD_NAMES",
    "MAX_COMPANIES",
    "MAX_STATED_TICKERS",
    "MAX_TICKERS",
    "TICKER_RE",
    "CompanyIndex",
    "Entities",
    "company_index",
    "known_symbols",
    "normalize_symbol",
    "tag_entities",
    "tag_tickers",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
# Each ticker of a story opens a series in every window: a story names at most this many.
# (Real market-roundup stories state up to about 70: none of theirs is cut.)
MAX_TICKERS = 100
# How many symbols a source may state for one story before the rest are not even read.
MAX_STATED_TICKERS = 4 * MAX_TICKERS
# Name slugs of companies without a ticker, per story (each opens series too).
MAX_COMPANIES = 5
TITLE_RELEVANCE = 1.0
BODY_RELEVANCE = 0.5
# The package's company table (scripts/build_company_aliases.py writes it).
ALIAS_TABLE = "data/company_aliases.csv.gz"

# Trailing words that only state the legal form: stripped to get the name people write.
LEGAL_SUFFIXES = _words(
    "inc incorporated corp corporation co company plc ag se ltd limited llc lp holdings holding "
    "group sa s.a nv n.v kgaa spa s.p.a ab asa oyj &"
)

# Stripped single-word names that are everyday words, first names, surnames or places (or,
# for "Nasdaq", an index far more often than the company): they need a legal suffix after them.
# The table's builder adds the English words, person names and places of its word lists.
COMMON_WORD_NAMES = _words(
    """
    admiral alamo arm ball berkeley block booking box brady buckle cactus city compass
    continental dana deluxe diploma disco dover elis elisa employers enact everest evolution fox
    gates harmonic hartford hawkins hayward hexagon hilltop hub indus integer interface investor
    knowles lindsay match nasdaq news next noble now orange partners phoenix plexus pool
    progressive radian rational rogers sabre sage sharp southern stepan sto stride tapestry
    target tennant universal waters weir bancorp
    """
)

# Company-name slugs: the word that makes capitalised words before it a company's name. The
# legal ones are left out of the slug ("Acme Corp" -> "acme"), the others kept
# ("silicon-valley-bank").
# ("AG" is left out: in news it is mostly an attorney general.)
_SLUG_LEGAL = _words("inc incorporated corp corporation ltd limited plc llc gmbh")
_SLUG_KEPT = _words(
    "bank bancorp bancshares airlines airways motors pharmaceuticals therapeutics biotherapeutics"
)
# Words before "Bank" that make a public or generic institution (or the West Bank), and
# countries before "Inc" or "plc" ("China Inc", "UK plc"): not companies.
_NOT_A_COMPANY = _words(
    """
    central national reserve federal world development investment european asian african
    export import people's peoples state regional failed big biggest largest major small
    digital crypto commercial private retail shadow community local global online mortgage
    loan infrastructure business west norges us u.s uk
    america britain china india japan germany france europe korea russia
    """
)
_SLUG_WORDS = 2  # capitalised words taken before the company word
# A quick look for a capitalised company word before any slug work (most stories have none).
_SLUG_HINT = re.compile(
    r"\b(?:Inc|INC|Incorporated|Corp|CORP|Corporation|Ltd|LTD|Limited|plc|PLC|Plc|LLC|GmbH"
    r"|Bank|BANK|Bancorp|Bancshares|Airlines|Airways|Motors|Pharmaceuticals|Therapeutics"
    r"|Biotherapeutics)\b"
)

_OPEN_START = "0000-00-00"
_OPEN_END = "9999-12-31"  # also the day of an undated story: the table's latest lists
# Known errors in the package's listing data, by primary symbol: the symbol to use instead, or
# None to leave the company out.
_SYMBOL_OVERRIDES: Mapping[str, str | None] = {
    "SIE.DE": "SIE.DE",  # its "NYSE:SI" listing is another company's symbol
    "STMPA.PA": None,  # listed under the name "STABILUS SE"
    "SGRO.L": "SGRO.L",  # "NASDAQ:ESGRO" is not a real listing
    "UNA.AS": "UL",  # Unilever trades in New York as UL since unification
}

_US_VENUES = frozenset({"NYSE", "NASDAQ", "NYSEAMERICAN", "NYSEARCA"})
_US_CODE = re.compile(r"^[A-Z]{1,5}(?:\.[A-Z])?$")

# Exchange prefix as written in news (upper-cased, spaces and hyphens removed) -> Yahoo suffix;
# "" marks a US venue, where the symbol is the ticker as it stands.
_EXCHANGE_SUFFIX: Mapping[str, str] = {
    **dict.fromkeys(
        _words(
            "NASDAQ NASDAQGS NASDAQGM NASDAQCM NYSE NYSEAMERICAN NYSEARCA NYSEMKT AMEX CBOE BATS "
            "OTC OTCMKTS OTCQX OTCQB OTCMARKETS"
        ),
        "",
    ),
    **dict.fromkeys(["LSE", "LON", "AIM"], "L"),
    **dict.fromkeys(["TSX"], "TO"),
    **dict.fromkeys(["TSXV"], "V"),
    **dict.fromkeys(["CSE"], "CN"),
    **dict.fromkeys(["ASX"], "AX"),
    **dict.fromkeys(["NZX"], "NZ"),
    **dict.fromkeys(["XETRA", "ETR"], "DE"),
    **dict.fromkeys(["FRA", "FWB"], "F"),
    **dict.fromkeys(["EPA"], "PA"),
    **dict.fromkeys(["AMS"], "AS"),
    **dict.fromkeys(["EBR"], "BR"),
    **dict.fromkeys(["ELI"], "LS"),
    **dict.fromkeys(["BIT", "MIL"], "MI"),
    **dict.fromkeys(["BME"], "MC"),
    **dict.fromkeys(["SIX", "SWX"], "SW"),
    **dict.fromkeys(["STO"], "ST"),
    **dict.fromkeys(["HEL"], "HE"),
    **dict.fromkeys(["CPH"], "CO"),
    **dict.fromkeys(["OSL"], "OL"),
    **dict.fromkeys(["TYO"], "T"),
    **dict.fromkeys(["NSE"], "NS"),
    **dict.fromkeys(["BSE"], "BO"),
    **dict.fromkeys(["JSE"], "JO"),
    **dict.fromkeys(["SGX"], "SI"),
    **dict.fromkeys(["KRX"], "KS"),
    **dict.fromkeys(["BMV"], "MX"),
}

_SYMBOL = r"[A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z]{1,2})?"
# Letters only after the "$" ("$US10bn" is money); no "$" or word character before it and no
# word character right after the symbol.
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Z]{1,6}(?:[.\-][A-Z]{1,2})?)(?!\w)")
_CASHTAG_DENY = frozenset({"US", "USD"})  # "$US" is a currency, not a cashtag
_PREFIXED = re.compile(
    r"(?<![\w])(?i:(NASDAQ(?:GS|GM|CM)?|NYSE(?:[ ]?(?:AMERICAN|ARCA|MKT))?|AMEX|CBOE|BATS"
    r"|OTC(?:MKTS|QX|QB|[ ]MARKETS)?|LSE|LON|AIM|TSX(?:-?V)?|CSE|ASX|NZX|XETRA|ETR|FRA|FWB|EPA"
    r"|AMS|EBR|ELI|BIT|MIL|BME|SIX|SWX|STO|HEL|CPH|OSL|TYO|NSE|BSE|JSE|SGX|KRX|BMV))"
    rf"[ ]?:[ ]?({_SYMBOL})(?!\w)"
)
_TOKEN = re.compile(r"[^\W_]+(?:[&.'’\-][^\W_]+)*|[&+]")
_CLASS_FORM = re.compile(r"^([A-Z]{1,5})-([A-Z])$")  # "BRK-B": the table writes "BRK.B"
_END = ""  # trie key for the entries that end at a node; real tokens are never empty


@dataclass(frozen=True, slots=True)
class _Entry:
    symbol: str
    needs_suffix: bool  # an ordinary-word name: only with a legal suffix after it
    upper_only: bool  # an abbreviation: only in capitals
    valid_from: str = _OPEN_START  # ISO days, both included
    valid_to: str = _OPEN_END


@dataclass(frozen=True, slots=True)
class _Span:
    """When a symbol (or a listing form's company symbol) holds."""

    symbol: str
    valid_from: str
    valid_to: str


@dataclass(frozen=True, slots=True)
class Entities:
    """What a story is about: ticker -> relevance, and name slugs of companies without one."""

    tickers: dict[str, float]
    companies: tuple[str, ...] = ()


@dataclass
class CompanyIndex:
    """Name trie plus the symbol maps; build it with `company_index()`."""

    trie: dict[str, Any] = field(default_factory=dict)
    # Listing or share-class form ("VOD.L", "GOOG", "CSGN.SW") -> the company's chosen symbol.
    listings: dict[str, tuple[_Span, ...]] = field(default_factory=dict)
    # Symbol -> the periods it was a company's symbol in the table.
    spans: dict[str, tuple[_Span, ...]] = field(default_factory=dict)
    symbols: frozenset[str] = frozenset()
    names: int = 0

    def find_names(self, text: str, day: str = _OPEN_END) -> list[str]:
        """Symbols of the companies named in ``text`` as of ``day`` (ISO), in order,
        leftmost-longest matches."""
        return self._scan(self.tokens(text), day)[0]

    def tokens(self, text: str) -> list[str]:
        """``text``'s tokens, a hyphenated one the trie does not know split into its parts
        ("Blackstone-Owned", "Ex-Twitter"; "Coca-Cola" stays whole)."""
        raw = _TOKEN.findall(text)
        if "-" not in text:
            return raw
        out: list[str] = []
        for token in raw:
            if "-" in token and _key(token) not in self.trie:
                out.extend(part for part in token.split("-") if part)
            else:
                out.append(token)
        return out

    def _scan(self, raw: list[str], day: str) -> tuple[list[str], list[bool]]:
        """The symbols found in the tokens ``raw``, and which tokens they took."""
        found: list[str] = []
        taken = [False] * len(raw)
        if not raw:
            return found, taken
        # (Inlined ASCII fast paths: this loop runs for every token of every story.)
        keys = [tok.casefold() if tok.isascii() else _key(tok) for tok in raw]
        i, n = 0, len(keys)
        trie = self.trie
        while i < n:
            node = trie.get(keys[i])
            if node is None:
                if not keys[i].endswith("'s"):
                    i += 1
                    continue
                possessive = _strip_possessive(keys[i])
                node = trie.get(possessive) if possessive else None
                if node is None or _END not in node:
                    i += 1
                    continue
                # "Apple's": a possessive can only end a name.
                hits = [(node[_END], i + 1)]
            else:
                hits = self._ends(node, keys, i + 1)
            first = _drop_possessive(raw[i])
            for candidates, end in reversed(hits):  # longest first
                hit = _valid(candidates, day)
                if hit is not None and _accepts(hit, first, keys, end):
                    found.append(hit.symbol)
                    stop = end + (1 if hit.needs_suffix else 0)
                    taken[i:stop] = [True] * (stop - i)
                    i = stop
                    break
            else:
                i += 1
        return found, taken

    @staticmethod
    def _ends(
        node: dict[str, Any], keys: list[str], j: int
    ) -> list[tuple[tuple[_Entry, ...], int]]:
        """Every name that starts at the token before ``j``, shortest first, with its end."""
        hits: list[tuple[tuple[_Entry, ...], int]] = []
        if _END in node:
            hits.append((node[_END], j))
        while j < len(keys):
            child = node.get(keys[j])
            if child is None:
                possessive = _strip_possessive(keys[j])
                child = node.get(possessive) if possessive else None
                if child is not None and _END in child:
                    hits.append((child[_END], j + 1))
                break
            node = child
            j += 1
            if _END in node:
                hits.append((node[_END], j))
        return hits

    def canonical(self, symbol: str, day: str = _OPEN_END) -> str:
        """One symbol per company as of ``day``: a symbol that was a company's own then stays;
        a listing or class form ("VOD.L", "BRK-B", "GOOG") is mapped to the company's chosen
        symbol; anything else is kept as written."""
        symbol = _CLASS_FORM.sub(r"\1.\2", symbol)
        if _held(self.spans.get(symbol), day) is not None:
            return symbol
        span = _held(self.listings.get(symbol), day)
        return span.symbol if span is not None else symbol

    def knows(self, symbol: str, day: str = _OPEN_END) -> bool:
        """Whether ``symbol`` (already canonical) was a company's symbol on ``day``."""
        return _held(self.spans.get(symbol), day) is not None


def _valid(candidates: tuple[_Entry, ...], day: str) -> _Entry | None:
    for entry in candidates:
        if entry.valid_from <= day <= entry.valid_to:
            return entry
    return None


def _held(spans: tuple[_Span, ...] | None, day: str) -> _Span | None:
    if spans:
        for span in spans:
            if span.valid_from <= day <= span.valid_to:
                return span
    return None


def _accepts(entry: _Entry, first: str, keys: list[str], end: int) -> bool:
    if entry.upper_only:
        if not first.isupper():
            return False
    elif not (first[0].isdigit() or first != first.lower()):
        return False  # "apple", "shell": lower-case words are not names
    if entry.needs_suffix:
        return end < len(keys) and keys[end].rstrip(".") in LEGAL_SUFFIXES
    return True


def _drop_possessive(token: str) -> str:
    return token[:-2] if len(token) > 2 and token.endswith(("'s", "’s")) else token


def _strip_possessive(key: str) -> str:
    return key[:-2] if key.endswith("'s") and len(key) > 2 else ""


def _key(token: str) -> str:
    """Token match key: case- and accent-insensitive ("Nestlé" == "nestle"), one apostrophe."""
    if not token.isascii():
        token = unicodedata.normalize("NFKD", token.replace("’", "'"))
        token = "".join(ch for ch in token if not unicodedata.combining(ch))
    return token.casefold()


def match_key(token: str) -> str:
    """A token as the tagger compares it (for the table's builder)."""
    return _key(token)


def tokens_of(text: str) -> list[str]:
    """``text``'s tokens as the tagger reads them (for the table's builder)."""
    return _TOKEN.findall(text)


def normalize_symbol(symbol: str) -> str | None:
    """A source-stated symbol, upper-cased without a leading "$", or None when it is not a
    plausible ticker."""
    cleaned = symbol.strip().lstrip("$").strip().upper()
    return cleaned if TICKER_RE.match(cleaned) else None


def chosen_symbol(stock: Mapping[str, Any]) -> str | None:
    """The one symbol of a ``pytickersymbols`` company: its US listing when it has one, else its
    primary one (the table's builder reads that package too)."""
    primary = str(stock.get("symbol") or "").strip().upper()
    if primary in _SYMBOL_OVERRIDES:
        return _SYMBOL_OVERRIDES[primary]
    us: list[str] = []
    for listing in stock.get("symbols") or ():
        venue, _, code = str(listing.get("google") or "").partition(":")
        if venue in _US_VENUES and _US_CODE.match(code):
            us.append(code)
    if primary in us:
        return primary
    if us:
        # Several US listings (old and new symbols): the one closest to the primary symbol.
        return min(us, key=lambda code: (-_common_prefix(code, primary), code))
    return primary if TICKER_RE.match(primary) else None


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def name_tokens(name: str) -> list[str]:
    """A company name's tokens as people write it: no parenthesised remark, no leading "The",
    no trailing legal suffixes ("Apple Inc." -> ["Apple"])."""
    name = re.sub(r"\([^)]*\)", " ", name)
    tokens = _TOKEN.findall(name)
    if tokens and tokens[0].casefold() == "the":
        tokens = tokens[1:]
    while len(tokens) > 1 and _key(tokens[-1]).rstrip(".") in LEGAL_SUFFIXES:
        tokens.pop()
    return tokens


def _build(rows: Iterable[Mapping[str, str]]) -> CompanyIndex:
    """The index of the company table's rows (see scripts/build_company_aliases.py)."""
    index = CompanyIndex()
    spans: dict[str, list[_Span]] = {}
    listings: dict[str, list[_Span]] = {}
    for row in rows:
        symbol, alias, kind = row["symbol"], row["alias"], row["kind"]
        start = row["valid_from"] or _OPEN_START
        end = row["valid_to"] or _OPEN_END
        if not TICKER_RE.match(symbol):
            continue
        if kind == "ticker":
            spans.setdefault(symbol, []).append(_Span(symbol, start, end))
        elif kind == "listing":
            listings.setdefault(alias, []).append(_Span(symbol, start, end))
        else:
            keys = tuple(_key(t) for t in _TOKEN.findall(alias))
            if keys:
                guard = row["guard"].split()
                entry = _Entry(symbol, "suffix" in guard, "caps" in guard, start, end)
                _insert(index.trie, keys, entry)
    index.spans = {symbol: tuple(s) for symbol, s in spans.items()}
    index.listings = {form: tuple(s) for form, s in listings.items()}
    index.symbols = frozenset(spans)
    index.names = _count(index.trie)
    return index


def _upper_only(tokens: list[str]) -> bool:
    """An all-capitals name ("IBM", "ACME Corp") matches only in capitals."""
    word = tokens[0]
    return word.isalpha() and word.isupper() and len(word) <= 5


def _with_watchlist(base: CompanyIndex, watchlist: Watchlist) -> CompanyIndex:
    """A copy of ``base`` that also knows the watchlist's companies: each name stripped as the
    package's are, each alias as written, both under the usual case rules but never needing a
    legal suffix (the analyst chose them) and with no date limits; the watchlist wins a name
    both hold."""
    index = replace(base, trie=copy.deepcopy(base.trie), spans=dict(base.spans))
    for company in watchlist.companies:
        forms = [name_tokens(company.name)] if company.name else []
        forms += [_TOKEN.findall(alias) for alias in company.aliases]
        for tokens in forms:
            keys = tuple(_key(t) for t in tokens)
            if keys and len("".join(keys)) >= 2:
                entry = _Entry(company.ticker, False, _upper_only(tokens))
                _insert(index.trie, keys, entry, replace_all=True)
        index.spans[company.ticker] = (_Span(company.ticker, _OPEN_START, _OPEN_END),)
    index.symbols = base.symbols | frozenset(watchlist.tickers)
    index.names = _count(index.trie)
    return index


def _insert(
    trie: dict[str, Any], keys: tuple[str, ...], entry: _Entry, replace_all: bool = False
) -> None:
    node = trie
    for key in keys:
        node = node.setdefault(key, {})
    # Several entries per name: its holders in different periods (the builder leaves out
    # names two companies held at once, so the first valid one is the one).
    node[_END] = (entry,) if replace_all else (*node.get(_END, ()), entry)


def _count(node: dict[str, Any]) -> int:
    return sum(len(child) if key == _END else _count(child) for key, child in node.items())


def _table_rows() -> list[dict[str, str]]:
    data = resources.files("finsent.ingest").joinpath(ALIAS_TABLE).read_bytes()
    return list(csv.DictReader(io.StringIO(gzip.decompress(data).decode("utf-8"))))


@cache
def _package_index() -> CompanyIndex:
    return _build(_table_rows())


@lru_cache(maxsize=8)
def company_index(watchlist: Watchlist = NO_WATCHLIST) -> CompanyIndex:
    """The name index, with ``watchlist``'s companies merged in; built once per watchlist on
    first use (about 0.2 s) and shared."""
    base = _package_index()
    return _with_watchlist(base, watchlist) if watchlist else base


def _day(published_at: datetime | date | None) -> str:
    """The ISO day a story is tagged as of: its UTC publish day, or the table's latest."""
    if published_at is None:
        return _OPEN_END
    if isinstance(published_at, datetime):
        if published_at.tzinfo is not None and published_at.tzinfo is not UTC:
            published_at = published_at.astimezone(UTC)
        return published_at.date().isoformat()
    return published_at.isoformat()


def _symbols_in(
    text: str, index: CompanyIndex, day: str, slugs: list[str] | None = None
) -> list[str]:
    found: list[str] = []
    if "$" in text:
        for match in _CASHTAG.finditer(text):
            if match.group(1) not in _CASHTAG_DENY:
                found.append(index.canonical(match.group(1), day))
    if ":" in text:
        for match in _PREFIXED.finditer(text):
            venue = re.sub(r"[ \-]", "", match.group(1).upper())
            code = match.group(2)
            suffix = _EXCHANGE_SUFFIX.get(venue, "")
            found.append(index.canonical(f"{code}.{suffix}" if suffix else code, day))
    raw = index.tokens(text)
    names, taken = index._scan(raw, day)
    found.extend(names)
    if slugs is not None and len(slugs) < MAX_COMPANIES and _SLUG_HINT.search(text):
        _add_slugs(raw, taken, slugs)
    return [s for s in found if TICKER_RE.match(s)]


def _add_slugs(raw: list[str], taken: list[bool], slugs: list[str]) -> None:
    """Name slugs of the companies ``raw`` names before a strong company word ("Bank",
    "Airlines", "Inc") that the table did not match: capitalised words right before it.
    Title case capitalises every word ("Says Bank", "More Airlines"), so there only a legal
    suffix counts, after one word."""
    title_case: bool | None = None
    for j in range(1, len(raw)):
        if taken[j] or not raw[j][0].isupper():
            continue
        word = _key(raw[j]).rstrip(".")
        legal = word in _SLUG_LEGAL
        if not (legal or word in _SLUG_KEPT):
            continue
        if title_case is None:
            words = [t for t in raw if len(t) > 3 and t.isalpha()]
            title_case = len(words) >= 4 and sum(t[0].isupper() for t in words) >= 0.7 * len(words)
        width = 1 if title_case else _SLUG_WORDS
        if title_case and not legal or j + 1 < len(raw) and _key(raw[j + 1]) == "of":
            continue  # "Bank of Japan", "Bank of England"
        start = j
        while start > 0 and j - start < width and _name_word(raw[start - 1], taken[start - 1]):
            start -= 1
        if start == j:
            continue
        name = [_key(t) for t in raw[start:j]]
        if any(k in _NOT_A_COMPANY for k in name):
            continue
        slug = "-".join(name if legal else [*name, word])[:60]
        if slug not in slugs:
            slugs.append(slug)
            if len(slugs) >= MAX_COMPANIES:
                return


def _name_word(token: str, taken: bool) -> bool:
    return not taken and token[0].isupper() and token.casefold() not in ("the", "a", "an")


def known_symbols(
    symbols: Iterable[str],
    watchlist: Watchlist = NO_WATCHLIST,
    published_at: datetime | date | None = None,
) -> tuple[str, ...]:
    """The source-stated symbols the company index (with ``watchlist``) knows as of
    ``published_at`` (as its one symbol per company), in order, deduplicated, at most
    ``MAX_TICKERS``: what an untrusted source may state."""
    index = company_index(watchlist)
    day = _day(published_at)
    out: dict[str, None] = {}
    for symbol in symbols:
        cleaned = normalize_symbol(str(symbol))
        canonical = index.canonical(cleaned, day) if cleaned else None
        if canonical is not None and index.knows(canonical, day):
            out[canonical] = None
            if len(out) >= MAX_TICKERS:
                break
    return tuple(out)


def taggable(text: str) -> str:
    """``text`` as the tagger reads it: format characters (zero-width joiners, bidi marks;
    Unicode category Cf) dropped and NFKC applied, so "$AA\u200dPL" reads "$AAPL" and
    full-width "＄ＡＡＰＬ" reads "$AAPL". ASCII text is returned as it is."""
    if text.isascii():
        return text
    # Each distinct character once, not every character: texts run to thousands of them.
    drop = {ord(ch): None for ch in set(text) if unicodedata.category(ch) == "Cf"}
    return unicodedata.normalize("NFKC", text.translate(drop) if drop else text)


def tag_entities(
    title: str,
    body: str = "",
    known: Iterable[str] = (),
    watchlist: Watchlist = NO_WATCHLIST,
    published_at: datetime | date | None = None,
    companies: bool = True,
) -> Entities:
    """The story's tickers (as `tag_tickers`) and, with ``companies``, the name slugs of at
    most ``MAX_COMPANIES`` companies it names without a ticker, title first. A source that
    states the story's tickers has said which companies it is about: no slugs then, or a
    company it names would count twice, under its ticker and under its name."""
    index = company_index(watchlist)
    day = _day(published_at)
    relevance: dict[str, float] = {}
    for symbol in known:
        cleaned = normalize_symbol(symbol)
        if cleaned:
            relevance[index.canonical(cleaned, day)] = TITLE_RELEVANCE
            if len(relevance) >= MAX_TICKERS:
                break
    slugs: list[str] | None = [] if companies and not relevance else None
    for symbol in _symbols_in(taggable(title), index, day, slugs):
        relevance[symbol] = TITLE_RELEVANCE
    if body:
        for symbol in _symbols_in(taggable(body), index, day, slugs):
            relevance.setdefault(symbol, BODY_RELEVANCE)
    ranked = sorted(relevance.items(), key=lambda kv: (-kv[1], kv[0]))
    return Entities(dict(ranked[:MAX_TICKERS]), tuple(slugs or ()))


def tag_tickers(
    title: str,
    body: str = "",
    known: Iterable[str] = (),
    watchlist: Watchlist = NO_WATCHLIST,
    published_at: datetime | date | None = None,
) -> dict[str, float]:
    """Ticker -> relevance: 1.0 when the title names it (or the source states it), 0.5 when only
    the body does. Ordered by relevance, then symbol; at most ``MAX_TICKERS`` of them.
    ``watchlist``: the analyst's own companies, tagged as the built-in ones are.
    ``published_at``: the story's time; names and listing forms count only as of its (UTC) day,
    and without it as of the table's latest lists."""
    entities = tag_entities(title, body, known, watchlist, published_at, companies=False)
    return entities.tickers
