"""Ticker tagging: which listed companies a headline and its body talk about.

Three kinds of evidence, all case-aware:

* cashtags: ``$AAPL``, ``$BRK.B`` (upper-case letters only, so money such as ``$5`` or
  ``$1.2bn`` never matches);
* exchange-prefixed symbols: ``NASDAQ:AAPL``, ``NYSE: IBM``, ``(LSE:VOD)``, ``TSX:RY``;
* company names from ``pytickersymbols`` (about 1,800 large and mid caps in the US, Europe and
  Japan), matched on whole tokens with a word trie, longest match first.

Every company gets one symbol, so the same company tagged from its name, a cashtag or a foreign
listing lands on one aggregate key: the US listing (NYSE/NASDAQ, Yahoo style without an
exchange suffix) when it has one, else its home listing in Yahoo style (``SIE.DE``). Symbols
must match ``^[A-Z][A-Z0-9.\\-]{0,9}$``, so purely numeric listings (most of Tokyo) are left out.

How names become matchable (``pytickersymbols`` lists no alternative names, so a small curated
alias table adds the common short forms):

* a parenthesised remark and a leading "The" are dropped, then trailing legal suffixes
  (Inc, Corp, plc, AG, SE, Ltd, Co, Company, Holdings, Group, SA, NV, ...): "Apple Inc." is
  matched as "Apple";
* a stripped name that is a common English word or a person's or place's name
  (``COMMON_WORD_NAMES``: Target, Block, Fox, Gates, ...) only matches when a legal suffix
  follows it in the text ("Target Corp" yes, "target" or "Target" alone no);
* a name shared by several companies goes to the single one with a US listing, else it is
  dropped as ambiguous;
* the text's first matched token must carry a capital letter (or be a digit, as in "3M"), and
  all-capital names such as "IBM" or "BP" match only in capitals, so "apple pie" or "bp"
  never count.

A watchlist (``finsent.core.watchlist``) adds the analyst's own companies: its names go through
the same stripping as the package's, its aliases are matched as written (like the curated
ones), under the same case rules; where a watchlist name or alias and a built-in one are the
same words, the watchlist's ticker wins. Its tickers are known symbols, so a source may state
them.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from typing import Any

from finsent.core.watchlist import NO_WATCHLIST, Watchlist

__all__ = [
    "COMMON_WORD_NAMES",
    "MAX_STATED_TICKERS",
    "MAX_TICKERS",
    "TICKER_RE",
    "CompanyIndex",
    "company_index",
    "known_symbols",
    "normalize_symbol",
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
TITLE_RELEVANCE = 1.0
BODY_RELEVANCE = 0.5

# Trailing words that only state the legal form: stripped to get the name people write.
LEGAL_SUFFIXES = _words(
    "inc incorporated corp corporation co company plc ag se ltd limited llc lp holdings holding "
    "group sa s.a nv n.v kgaa spa s.p.a ab asa oyj &"
)

# Stripped single-word names that are everyday words, first names, surnames or places (or,
# for "Nasdaq", an index far more often than the company): they need a legal suffix after them.
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

# Common short forms the package does not list. A target symbol the index does not know is
# ignored, so this table cannot invent tickers.
ALIASES: Mapping[str, str] = {
    "Google": "GOOGL",
    "Facebook": "META",
    "Meta": "META",
    "Exxon": "XOM",
    "Berkshire": "BRK.B",
    "JPMorgan": "JPM",
    "JP Morgan": "JPM",
    "Disney": "DIS",
    "Ford": "F",
    "Micron": "MU",
    "Palantir": "PLTR",
    "Marriott": "MAR",
    "Regeneron": "REGN",
    "Seagate": "STX",
    "Merck": "MRK",
}

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
_END = ""  # trie key for the entry that ends at a node; real tokens are never empty


@dataclass(frozen=True, slots=True)
class _Entry:
    symbol: str
    needs_suffix: bool  # a common-word name: only with a legal suffix after it
    upper_only: bool  # an all-capitals name: only in capitals


@dataclass
class CompanyIndex:
    """Name trie plus the symbol maps; build it with `company_index()`."""

    trie: dict[str, Any] = field(default_factory=dict)
    # Yahoo-style listing symbol ("VOD.L", "BRK-B") -> the company's chosen symbol.
    listings: dict[str, str] = field(default_factory=dict)
    symbols: frozenset[str] = frozenset()
    names: int = 0

    def find_names(self, text: str) -> list[str]:
        """Symbols of the companies named in ``text``, in order, leftmost-longest matches."""
        raw = _TOKEN.findall(text)
        if not raw:
            return []
        keys = [_key(tok) for tok in raw]
        found: list[str] = []
        i, n = 0, len(keys)
        trie = self.trie
        while i < n:
            node = trie.get(keys[i])
            if node is None:
                possessive = _strip_possessive(keys[i])
                node = trie.get(possessive) if possessive else None
                if node is None or _END not in node:
                    i += 1
                    continue
                # "Apple's": a possessive can only end a name.
                hit, end = node[_END], i + 1
            else:
                hit, end = self._longest(node, keys, i + 1)
            if hit is not None and _accepts(hit, _drop_possessive(raw[i]), keys, end):
                found.append(hit.symbol)
                i = end + (1 if hit.needs_suffix else 0)
            else:
                i += 1
        return found

    @staticmethod
    def _longest(node: dict[str, Any], keys: list[str], j: int) -> tuple[_Entry | None, int]:
        hit: _Entry | None = node.get(_END)
        end = j
        while j < len(keys):
            child = node.get(keys[j])
            if child is None:
                possessive = _strip_possessive(keys[j])
                child = node.get(possessive) if possessive else None
                if child is not None and _END in child:
                    hit, end = child[_END], j + 1
                break
            node = child
            j += 1
            if _END in node:
                hit, end = node[_END], j
        return hit, end

    def canonical(self, symbol: str) -> str:
        """One symbol per company: a suffixed or class form ("VOD.L", "BRK-B") is mapped to the
        company's chosen symbol; a bare code is kept as written."""
        if "." in symbol or "-" in symbol:
            return self.listings.get(symbol, symbol)
        return symbol


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


def normalize_symbol(symbol: str) -> str | None:
    """A source-stated symbol, upper-cased without a leading "$", or None when it is not a
    plausible ticker."""
    cleaned = symbol.strip().lstrip("$").strip().upper()
    return cleaned if TICKER_RE.match(cleaned) else None


def _chosen_symbol(stock: Mapping[str, Any]) -> str | None:
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


def _name_tokens(name: str) -> list[str]:
    name = re.sub(r"\([^)]*\)", " ", name)
    tokens = _TOKEN.findall(name)
    if tokens and tokens[0].casefold() == "the":
        tokens = tokens[1:]
    while len(tokens) > 1 and _key(tokens[-1]).rstrip(".") in LEGAL_SUFFIXES:
        tokens.pop()
    return tokens


def _build(stocks: Iterable[Mapping[str, Any]]) -> CompanyIndex:
    candidates: dict[tuple[str, ...], dict[str, tuple[bool, bool]]] = {}
    us_listed: set[str] = set()
    listings: dict[str, set[str]] = {}
    symbols: set[str] = set()

    def add(tokens: list[str], symbol: str) -> None:
        keys = tuple(_key(t) for t in tokens)
        if not keys or len("".join(keys)) < 2:
            return
        single = len(keys) == 1
        needs_suffix = single and keys[0] in COMMON_WORD_NAMES
        candidates.setdefault(keys, {})[symbol] = (needs_suffix, _upper_only(tokens))

    for stock in stocks:
        symbol = _chosen_symbol(stock)
        if symbol is None:
            continue
        symbols.add(symbol)
        if _US_CODE.match(symbol):
            us_listed.add(symbol)
        for form in [stock.get("symbol"), *(s.get("yahoo") for s in stock.get("symbols") or ())]:
            form = str(form or "").strip().upper()
            if form and ("." in form or "-" in form):
                listings.setdefault(form, set()).add(symbol)
        add(_name_tokens(str(stock.get("name") or "")), symbol)

    index = CompanyIndex()
    for keys, owners in candidates.items():
        if len(owners) > 1:
            us = [s for s in owners if s in us_listed]
            if len(us) != 1:
                continue  # ambiguous: several companies answer to this name
            owners = {us[0]: owners[us[0]]}
        ((symbol, (needs_suffix, upper_only)),) = owners.items()
        _insert(index.trie, keys, _Entry(symbol, needs_suffix, upper_only))
    for alias, symbol in ALIASES.items():
        if symbol in symbols:
            tokens = _TOKEN.findall(alias)
            _insert(index.trie, tuple(_key(t) for t in tokens), _Entry(symbol, False, False))
    index.listings = {form: next(iter(s)) for form, s in listings.items() if len(s) == 1}
    index.symbols = frozenset(symbols)
    index.names = _count(index.trie)
    return index


def _upper_only(tokens: list[str]) -> bool:
    """An all-capitals name ("IBM", "ACME Corp") matches only in capitals."""
    word = tokens[0]
    return word.isalpha() and word.isupper() and len(word) <= 5


def _with_watchlist(base: CompanyIndex, watchlist: Watchlist) -> CompanyIndex:
    """A copy of ``base`` that also knows the watchlist's companies: each name stripped as the
    package's are, each alias as written, both under the usual case rules but never needing a
    legal suffix (the analyst chose them); the watchlist wins a name both hold."""
    index = replace(base, trie=copy.deepcopy(base.trie))
    for company in watchlist.companies:
        forms = [_name_tokens(company.name)] if company.name else []
        forms += [_TOKEN.findall(alias) for alias in company.aliases]
        for tokens in forms:
            keys = tuple(_key(t) for t in tokens)
            if keys and len("".join(keys)) >= 2:
                _insert(index.trie, keys, _Entry(company.ticker, False, _upper_only(tokens)))
    index.symbols = base.symbols | frozenset(watchlist.tickers)
    index.names = _count(index.trie)
    return index


def _insert(trie: dict[str, Any], keys: tuple[str, ...], entry: _Entry) -> None:
    node = trie
    for key in keys:
        node = node.setdefault(key, {})
    node[_END] = entry


def _count(node: dict[str, Any]) -> int:
    return sum(1 if key == _END else _count(child) for key, child in node.items())


@cache
def _package_index() -> CompanyIndex:
    from pytickersymbols import PyTickerSymbols

    return _build(PyTickerSymbols().get_all_stocks())


@lru_cache(maxsize=8)
def company_index(watchlist: Watchlist = NO_WATCHLIST) -> CompanyIndex:
    """The name index, with ``watchlist``'s companies merged in; built once per watchlist on
    first use (about 0.1 s) and shared."""
    base = _package_index()
    return _with_watchlist(base, watchlist) if watchlist else base


def _symbols_in(text: str, index: CompanyIndex) -> list[str]:
    found: list[str] = []
    if "$" in text:
        for match in _CASHTAG.finditer(text):
            if match.group(1) not in _CASHTAG_DENY:
                found.append(index.canonical(match.group(1)))
    if ":" in text:
        for match in _PREFIXED.finditer(text):
            venue = re.sub(r"[ \-]", "", match.group(1).upper())
            code = match.group(2)
            suffix = _EXCHANGE_SUFFIX.get(venue, "")
            found.append(index.canonical(f"{code}.{suffix}" if suffix else code))
    found.extend(index.find_names(text))
    return [s for s in found if TICKER_RE.match(s)]


def known_symbols(symbols: Iterable[str], watchlist: Watchlist = NO_WATCHLIST) -> tuple[str, ...]:
    """The source-stated symbols the company index (with ``watchlist``) knows (as its one
    symbol per company), in order, deduplicated, at most ``MAX_TICKERS``: what an untrusted
    source may state."""
    index = company_index(watchlist)
    out: dict[str, None] = {}
    for symbol in symbols:
        cleaned = normalize_symbol(str(symbol))
        canonical = index.canonical(cleaned) if cleaned else None
        if canonical in index.symbols:
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
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", text)


def tag_tickers(
    title: str, body: str = "", known: Iterable[str] = (), watchlist: Watchlist = NO_WATCHLIST
) -> dict[str, float]:
    """Ticker -> relevance: 1.0 when the title names it (or the source states it), 0.5 when only
    the body does. Ordered by relevance, then symbol; at most ``MAX_TICKERS`` of them.
    ``watchlist``: the analyst's own companies, tagged as the built-in ones are."""
    index = company_index(watchlist)
    relevance: dict[str, float] = {}
    for symbol in known:
        cleaned = normalize_symbol(symbol)
        if cleaned:
            relevance[index.canonical(cleaned)] = TITLE_RELEVANCE
            if len(relevance) >= MAX_TICKERS:
                break
    for symbol in _symbols_in(taggable(title), index):
        relevance[symbol] = TITLE_RELEVANCE
    if body:
        for symbol in _symbols_in(taggable(body), index):
            relevance.setdefault(symbol, BODY_RELEVANCE)
    ranked = sorted(relevance.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:MAX_TICKERS])
