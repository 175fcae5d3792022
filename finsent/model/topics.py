"""The 20 analyst topics of the Twitter Financial News scheme, and a keyword tagger for the baseline."""

from __future__ import annotations

import re

TOPICS: tuple[str, ...] = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)
FALLBACK_TOPIC = "General News | Opinion"

# Word stems per topic; the first topic with the most hits wins. A baseline, not a model.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Analyst Update": ("analyst", "upgrade", "downgrade", "price target", "rating", "outperform"),
    "Fed | Central Banks": (
        "fed",
        "federal reserve",
        "central bank",
        "ecb",
        "rate hike",
        "rate cut",
        "powell",
    ),
    "Company | Product News": ("launch", "product", "unveil", "recall", "partnership", "contract"),
    "Treasuries | Corporate Debt": (
        "treasury",
        "treasuries",
        "bond",
        "yield",
        "debt",
        "notes offering",
    ),
    "Dividend": ("dividend", "payout", "buyback"),
    "Earnings": ("earnings", "profit", "revenue", "quarter", "eps", "guidance", "results"),
    "Energy | Oil": ("oil", "crude", "opec", "gas", "energy", "brent"),
    "Financials": ("bank", "banks", "lender", "deposit", "credit", "insurer", "fdic"),
    "Currencies": ("dollar", "euro", "yen", "currency", "currencies", "forex", "sterling"),
    "Gold | Metals | Materials": ("gold", "silver", "copper", "metal", "steel", "lithium"),
    "IPO": ("ipo", "listing", "debut", "goes public"),
    "Legal | Regulation": (
        "lawsuit",
        "sue",
        "court",
        "regulator",
        "sec",
        "probe",
        "fine",
        "settlement",
    ),
    "M&A | Investments": ("acquire", "acquisition", "merger", "takeover", "stake", "deal to buy"),
    "Macro": ("inflation", "gdp", "jobs report", "unemployment", "economy", "recession", "cpi"),
    "Markets": ("stocks", "market", "s&p", "nasdaq", "dow", "index", "futures"),
    "Politics": ("election", "congress", "senate", "president", "tariff", "government", "minister"),
    "Personnel Change": ("ceo", "cfo", "resign", "appoint", "steps down", "names new", "hires"),
    "Stock Commentary": ("shares could", "buy the dip", "stock to watch", "top pick", "valuation"),
    "Stock Movement": ("shares", "soar", "plunge", "jump", "tumble", "rally", "slump", "surge"),
}
_PATTERNS = {
    topic: [re.compile(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])") for word in words]
    for topic, words in _KEYWORDS.items()
}


def keyword_topic(text: str) -> tuple[str, dict[str, float]]:
    """The best-matching topic and a normalized hit distribution over all topics."""
    lowered = text.lower()
    hits = {
        topic: sum(1 for p in patterns if p.search(lowered))
        for topic, patterns in _PATTERNS.items()
    }
    total = sum(hits.values())
    if total == 0:
        return FALLBACK_TOPIC, {FALLBACK_TOPIC: 1.0}
    best = max(TOPICS, key=lambda t: hits.get(t, 0))  # ties: earlier topic in TOPICS
    return best, {t: n / total for t, n in hits.items() if n}
