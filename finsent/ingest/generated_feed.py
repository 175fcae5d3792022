"""A generated live feed for soak tests: distinct stories, near-duplicates and re-polled copies,
over thousands of tickers, with event times from a clock the caller passes in.

Written by this project (no copied headlines). Each story is a ``RawStory`` that states its one
ticker, as a source with symbol categories does, and knows what the generator meant it to be
(``kind``), so a soak test can reconcile what the pipeline counted with what went in:

* ``original``: a new story. Its title is unique (a ticker's k-th story takes the k-th pair of
  verb and context), so exact-title dedup keeps every one, and a ticker's stories share no
  context for their first ``len(CONTEXTS)``, so the near-duplicate index does not chain them
  (unless a rewrite is published before its original: then the original joins its chain).
* ``near``: a rewrite of a recent original, often by another outlet ("BRIEF-...", "..., sources
  say"): another URL and title, so exact dedup keeps it, and an estimated Jaccard similarity of
  0.75-0.9 on ``dedup.keys.shingles``, so the near-duplicate index should chain it.
* ``exact``: the same item again (same URL, title, source and time), as a feed re-polled: the
  exact-dedup memory drops it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import product
from typing import Literal

from finsent.ingest.raw import RawStory

StoryKind = Literal["original", "near", "exact"]

# Invented company names: syllables no listed company's name is made of (a test checks that
# the tagger finds no other ticker or company in any generated title).
_HEADS = (
    "Bal", "Cor", "Dax", "Fen", "Gal", "Hol", "Jor", "Kel", "Lum", "Mar",
    "Nov", "Pex", "Quor", "Rav", "Sol", "Tal", "Ulm", "Vex", "Wen", "Yar",
)  # fmt: skip
_MIDS = (
    "a", "e", "i", "o", "u", "ar", "en", "ir", "or", "ul",
    "ax", "eb", "id", "ov", "un", "ai", "ea", "io", "ou", "yr",
)  # fmt: skip
_TAILS = (
    "dex", "lin", "mar", "nic", "pra", "ron", "sys", "tek", "vion", "zen", "quist", "vant", "bex",
    "lora",
)  # fmt: skip
VERBS = (
    "shares rise", "shares climb", "stock jumps", "shares fall", "stock slides", "shares drop",
    "stock edges higher", "shares slip", "stock gains", "shares tumble", "stock rallies",
    "shares sink",
)  # fmt: skip
CONTEXTS = (
    "after quarterly results beat forecasts", "on strong demand for new products",
    "as margins narrow", "after guidance cut", "on takeover speculation",
    "amid supply chain delays", "after analyst upgrade", "after analyst downgrade",
    "on record orders", "as input costs climb", "after chief executive departs",
    "on dividend increase", "after regulatory probe", "on plant expansion plans",
    "as european sales slow", "after buyback announcement", "on debt refinancing",
    "amid labor strike", "after product recall", "on new government contract",
    "as inventory builds", "after patent ruling", "on asian market entry",
    "amid accounting questions", "after credit rating change", "on software outage",
    "as subscriber growth stalls", "after merger talks end", "on pricing power",
    "amid shareholder revolt", "after factory fire", "on cloud partnership",
    "as freight volumes fall", "after drug trial success", "on weak holiday season",
    "amid currency swings", "after board shakeup", "on battery breakthrough",
    "as retail traffic recovers", "after earnings miss", "on activist stake",
    "amid cyber attack", "after spinoff plan", "on export licence", "as rates weigh",
    "after crop damage", "on mining permit", "amid tariff threat",
)  # fmt: skip
# A near-duplicate adds words to the original title, never removes any: high similarity.
REWRITES = (
    "BRIEF-{t}", "UPDATE 1-{t}", "{t}, sources say", "{t} - analysts", "{t}, report says",
    "WRAP-{t}",
)  # fmt: skip
OUTLETS = (
    "Daily Ledger Wire", "Market Pulse", "The Quarterly Desk", "Street Bulletin",
    "Harbor Financial Post", "Meridian Newswire",
)  # fmt: skip


def company_names(n: int) -> list[str]:
    """``n`` distinct invented company names, in a fixed order."""
    names = list(dict.fromkeys(f"{h}{m}{t}" for h, m, t in product(_HEADS, _MIDS, _TAILS)))
    if n > len(names):
        raise ValueError(f"at most {len(names)} tickers, not {n}")
    return names[:n]


def ticker_symbol(index: int) -> str:
    """The generated ticker ``index``: "Z0042" (no listed company has such a symbol)."""
    return f"Z{index:04d}"


@dataclass(frozen=True)
class FeedShape:
    """What the generated feed looks like (the rate is the caller's: it asks for stories)."""

    tickers: int = 4970  # with the outlets, 20 topics and "overall": about 5,000 series keys
    outlets: int = len(OUTLETS)
    near_share: float = 0.20  # rewrites of recent originals
    exact_share: float = 0.02  # re-polled copies of recent originals (dropped by exact dedup)
    jitter_s: float = 20.0  # a story is published up to this long before it is due
    recent: int = 1000  # originals that near-duplicates and copies are drawn from
    seed: int = 21

    def __post_init__(self) -> None:
        if not 1 <= self.tickers <= 10_000:
            raise ValueError("tickers must be in 1..10000")
        if not 1 <= self.outlets <= len(OUTLETS):
            raise ValueError(f"outlets must be in 1..{len(OUTLETS)}")
        if self.near_share < 0 or self.exact_share < 0 or self.near_share + self.exact_share >= 1:
            raise ValueError("near_share and exact_share must be >= 0 and add up to under 1")
        if self.jitter_s < 0 or self.recent < 1:
            raise ValueError("jitter_s must be >= 0 and recent >= 1")


@dataclass(frozen=True, slots=True)
class GeneratedStory:
    raw: RawStory
    kind: StoryKind
    ticker: str
    outlet: str


@dataclass(slots=True)
class _Recent:
    story: GeneratedStory
    rewrites: int = 0  # REWRITES used so far: each at most once, so no two titles are equal


@dataclass
class FeedGenerator:
    """Stories one at a time; ``story(due)`` makes the next one, published at most
    ``jitter_s`` before ``due``. Memory is bounded: only ``recent`` originals are kept."""

    shape: FeedShape = field(default_factory=FeedShape)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.shape.seed)
        self.tickers = [ticker_symbol(i) for i in range(self.shape.tickers)]
        self.names = dict(zip(self.tickers, company_names(self.shape.tickers), strict=True))
        self.outlets = OUTLETS[: self.shape.outlets]
        self.per_ticker: dict[str, int] = {}  # originals so far, by ticker
        headlines = len(VERBS) * len(CONTEXTS)
        self.offsets = {t: self.rng.randrange(headlines) for t in self.tickers}
        self.recent: deque[_Recent] = deque(maxlen=self.shape.recent)
        self.made = 0

    def story(self, due: datetime) -> GeneratedStory:
        self.made += 1
        draw = self.rng.random()
        if self.recent and draw < self.shape.exact_share:
            return self._copy()
        if self.recent and draw < self.shape.exact_share + self.shape.near_share:
            near = self._rewrite(due)
            if near is not None:
                return near
        return self._original(due)

    def _published(self, due: datetime) -> datetime:
        return due - timedelta(seconds=self.rng.uniform(0.0, self.shape.jitter_s))

    def _original(self, due: datetime) -> GeneratedStory:
        ticker = self.rng.choice(self.tickers)
        n = self.per_ticker.get(ticker, 0)
        self.per_ticker[ticker] = n + 1
        # The ticker's n-th story takes headline k: context k, verb from k, so (verb, context)
        # repeats only after len(VERBS) * len(CONTEXTS) stories, and then the round keeps the
        # title new. Two stories with one verb (k apart by a multiple of 12) never move alike
        # before k = 60: a shared verb, number and company would bring them near the threshold.
        # Each ticker starts at its own k, so tickers do not all run one template at a time.
        k = n + self.offsets[ticker]
        verb = VERBS[(k * 5 + k // len(CONTEXTS)) % len(VERBS)]
        context = CONTEXTS[k % len(CONTEXTS)]
        moved = 1 + k % 15
        title = f"{self.names[ticker]} {verb} {moved}% {context}"
        rounds = n // (len(VERBS) * len(CONTEXTS))
        if rounds:
            title += f" in round {rounds + 1}"
        outlet = self.rng.choice(self.outlets)
        story = self._make(title, outlet, "story", self._published(due), ticker, "original")
        self.recent.append(_Recent(story))
        return story

    def _rewrite(self, due: datetime) -> GeneratedStory | None:
        entry = self.recent[self.rng.randrange(len(self.recent))]
        if entry.rewrites >= len(REWRITES):
            return None
        pattern = REWRITES[entry.rewrites]
        entry.rewrites += 1
        original = entry.story
        title = pattern.format(t=original.raw.title)
        outlet = self.rng.choice(self.outlets)
        return self._make(title, outlet, "rewrite", self._published(due), original.ticker, "near")

    def _copy(self) -> GeneratedStory:
        original = self.recent[self.rng.randrange(len(self.recent))].story
        return GeneratedStory(original.raw, "exact", original.ticker, original.outlet)

    def _make(
        self,
        title: str,
        outlet: str,
        path: str,
        published: datetime,
        ticker: str,
        kind: StoryKind,
    ) -> GeneratedStory:
        slug = outlet.lower().replace(" ", "-")
        raw = RawStory(
            source=outlet,
            title=title,
            url=f"https://soak.example/{slug}/{path}/{self.made}",
            published=published,
            tickers=(ticker,),
        )
        return GeneratedStory(raw, kind, ticker, outlet)
