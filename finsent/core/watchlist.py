"""The analyst's watchlist: their own tickers and the names and aliases news uses for them.

A YAML file named by ``FINSENT_WATCHLIST_FILE`` (``Settings.watchlist_file``)::

    companies:
      - ticker: ACME
        name: Acme Corp                 # matched as the built-in names are: "Acme"
        aliases: ["Acme", "ACME Corp."] # matched as written (case rules of the tagger)

The tagger (``ingest/tickers.py``) merges it into its company index, so the names tag stories;
the alerter watches its ``ticker:*`` series whatever ``alert_keys`` says and lets a rules file
match them with ``watchlist: true``; the dashboard filters by it. Each reads it through its
stage's frozen config, never from the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finsent.core.settings import ConfigFileError

__all__ = [
    "MAX_WATCHED",
    "NO_WATCHLIST",
    "WatchedCompany",
    "Watchlist",
    "WatchlistError",
    "load_watchlist",
]

MAX_WATCHED = 500  # companies: the dashboard's "watchlist only" filter is one query over them
# The ticker grammar of the tagger and the stored records (finsent.ingest.tickers.TICKER_RE).
_TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
_WORD = re.compile(r"[^\W_]", re.UNICODE)


class WatchlistError(ConfigFileError):
    """The watchlist file is unreadable or invalid; the message is one line naming the file
    and the entry. A ``ConfigFileError``, so every command reports it as one line."""


@dataclass(frozen=True, slots=True)
class WatchedCompany:
    ticker: str  # upper case, as the tagger and the series keys write it
    name: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Watchlist:
    """The watched companies, in file order; empty when no file is configured."""

    companies: tuple[WatchedCompany, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.companies)

    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(company.ticker for company in self.companies)

    @property
    def keys(self) -> frozenset[str]:
        """The series keys of its tickers (``ticker:ACME``)."""
        return frozenset(f"ticker:{ticker}" for ticker in self.tickers)


NO_WATCHLIST = Watchlist()


class _Company(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    ticker: str
    name: str = Field("", max_length=200)
    aliases: tuple[str, ...] = Field((), max_length=50)

    @field_validator("ticker", mode="before")
    @classmethod
    def _ticker(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # pydantic says what it is instead
        ticker = value.strip().lstrip("$").upper()
        if not _TICKER.match(ticker):
            raise ValueError(
                "a ticker is 1 to 10 letters, digits, '.' or '-', starting with a letter"
            )
        return ticker

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for alias in value:
            if len(alias) > 200 or len(_WORD.findall(alias)) < 2:
                raise ValueError(f"alias {alias!r} needs 2 to 200 characters, letters or digits")
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    companies: tuple[_Company, ...] = Field((), max_length=MAX_WATCHED)


def load_watchlist(path: Path | None) -> Watchlist:
    """The watchlist in ``path`` (None: the empty one); ``WatchlistError`` in one line when the
    file cannot be read or an entry is invalid, a ticker is listed twice or an alias names
    two tickers."""
    if path is None:
        return NO_WATCHLIST
    where = f"watchlist {path}"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WatchlistError(f"{where} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise WatchlistError(f"{where} is not valid YAML{at}") from None
    if data is None:
        return NO_WATCHLIST
    if not isinstance(data, dict):
        raise WatchlistError(f"{where} must hold a mapping with a 'companies' list")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise WatchlistError(f"{where}: {_problems(exc, data)}") from None
    companies = tuple(WatchedCompany(c.ticker, c.name, c.aliases) for c in parsed.companies)
    _check_unique(where, companies)
    return Watchlist(companies)


def _problems(exc: ValidationError, data: dict[str, Any]) -> str:
    """Each error as the entry it is in (its number and ticker, as written), the field and
    the problem, on one line."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "companies" and isinstance(loc[1], int):
            entry = _entry(data, loc[1])
            field = ".".join(str(part) for part in loc[2:])
            where = f"companies[{loc[1]}]{entry}" + (f" {field}" if field else "")
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def _entry(data: dict[str, Any], index: int) -> str:
    companies = data.get("companies")
    if isinstance(companies, list) and index < len(companies):
        entry = companies[index]
        if isinstance(entry, dict) and isinstance(entry.get("ticker"), str):
            return f" (ticker {entry['ticker'][:20]!r})"
    return ""


def _check_unique(where: str, companies: tuple[WatchedCompany, ...]) -> None:
    tickers: dict[str, int] = {}
    aliases: dict[str, str] = {}
    for i, company in enumerate(companies):
        if company.ticker in tickers:
            raise WatchlistError(
                f"{where}: companies[{i}]: ticker {company.ticker} is already listed at "
                f"companies[{tickers[company.ticker]}]"
            )
        tickers[company.ticker] = i
        for alias in company.aliases:
            owner = aliases.setdefault(alias.casefold(), company.ticker)
            if owner != company.ticker:
                raise WatchlistError(
                    f"{where}: companies[{i}] (ticker {company.ticker!r}): alias {alias!r} "
                    f"also names {owner}"
                )
