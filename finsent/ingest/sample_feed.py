"""A synthetic sample feed for the demo, written by this project (no copied headlines).

Fictional companies produce a steady background of mixed news; a scripted episode then piles
negative bank news onto one lender, which the alert engine should catch.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


@dataclass(frozen=True)
class Company:
    name: str
    ticker: str


COMPANIES = (
    Company("Northwind Bank", "NWB"),
    Company("Harbor Trust Bank", "HBT"),
    Company("Apex Motors", "APXM"),
    Company("Crestline Energy", "CRST"),
    Company("Lumen Devices", "LMND"),
    Company("Bluewater Foods", "BWF"),
    Company("Meridian Metals", "MRDN"),
    Company("Summit Pharma", "SMPH"),
)
SOURCES = ("Daily Ledger Wire", "Market Pulse", "The Quarterly Desk", "Street Bulletin")

# (template, sentiment) pairs; {c} is a company name.
BACKGROUND = (
    ("{c} reports record quarterly profit as revenue beats expectations", "positive"),
    ("{c} earnings improve on strong demand and higher margins", "positive"),
    ("{c} raises dividend after a profitable year", "positive"),
    ("{c} wins major contract, shares gain", "positive"),
    ("Analyst upgrades {c} citing improved outlook", "positive"),
    ("{c} announces date of annual shareholder meeting", "neutral"),
    ("{c} names new chief financial officer", "neutral"),
    ("{c} to present at industry conference next week", "neutral"),
    ("{c} completes previously announced bond offering", "neutral"),
    ("{c} shares little changed ahead of earnings", "neutral"),
    ("Oil prices steady as traders await inventory data", "neutral"),
    ("Stocks open flat as investors weigh inflation data", "neutral"),
    ("Central bank holds interest rates, signals patience", "neutral"),
    ("Dollar edges higher against the euro in quiet trade", "neutral"),
    ("{c} misses estimates as costs weigh on results", "negative"),
    ("{c} cuts guidance citing weak demand", "negative"),
    ("{c} faces lawsuit over product defects", "negative"),
    ("{b} expands mortgage lending as bank deposits hold steady", "neutral"),
    ("{b} opens regional offices, adds bank staff", "neutral"),
    ("{b} publishes annual bank review on schedule", "neutral"),
)
BANKS = tuple(c for c in COMPANIES if "Bank" in c.name)
NON_BANKS = tuple(c for c in COMPANIES if c not in BANKS)
EPISODE = (
    "{c} shares plunge as deposit losses mount",
    "{c} warns of heavy losses on bond portfolio",
    "Depositors withdraw funds from {c} amid liquidity concerns",
    "{c} credit rating downgraded on severe losses",
    "Regulators probe {c} after failed capital raise",
    "{c} halts trading after steep decline and default fears",
    "Bank stocks tumble as {c} crisis deepens, losses spread",
    "{c} faces investigation over misleading disclosures",
)


def generate(
    *,
    end: datetime,
    hours: float = 6.0,
    per_hour: float = 60.0,
    episode_start_frac: float = 0.7,
    episode_minutes: int = 45,
    episode_per_hour: float = 60.0,
    seed: int = 7,
) -> list[dict]:
    """Stories (as replay rows) spanning ``hours`` up to ``end``, sorted by publish time."""
    rng = random.Random(seed)
    start = end - timedelta(hours=hours)
    rows: list[dict] = []
    t = start
    while True:
        t += timedelta(seconds=rng.expovariate(per_hour / 3600))
        if t >= end:
            break
        template, sentiment = rng.choice(BACKGROUND)
        # Background bad news spares the banks, so the scripted bank episode is the one story.
        pool = BANKS if "{b}" in template else NON_BANKS if sentiment == "negative" else COMPANIES
        company = rng.choice(pool)
        title = template.format(c=company.name, b=company.name)
        rows.append(_row(title, company, t, rng))
    victim = COMPANIES[0]
    # On the quarter hour, so the episode fills whole 15-minute alert windows whatever the
    # time the feed ends: straddling two windows, it could fall short in both and not alert.
    ep_start = _quarter_hour(start + timedelta(hours=hours * episode_start_frac))
    ep_end = ep_start + timedelta(minutes=episode_minutes)
    t = ep_start
    while True:
        t += timedelta(seconds=rng.expovariate(episode_per_hour / 3600))
        if t >= ep_end:
            break
        rows.append(_row(rng.choice(EPISODE).format(c=victim.name), victim, t, rng))
    rows.sort(key=lambda r: r["published_at"])
    # A headline that runs again is an update of its story, as wires label them: distinct
    # titles (so exact-title dedup keeps them) that near-duplicate detection chains together.
    runs: dict[str, int] = {}
    for row in rows:
        run = runs[row["title"]] = runs.get(row["title"], 0) + 1
        if run > 1:
            row["title"] = f"UPDATE {run}-{row['title']}"
    return rows


def _quarter_hour(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def _row(title: str, company: Company, at: datetime, rng: random.Random) -> dict:
    source = rng.choice(SOURCES)
    slug = "-".join(title.lower().replace(",", "").split())[:80]
    stamp = at.strftime("%Y%m%d%H%M%S")
    return {
        "title": title,
        "published_at": at.astimezone(UTC).isoformat(timespec="seconds"),
        "source": source,
        "url": f"https://example.com/{source.lower().replace(' ', '-')}/{stamp}/{slug}",
        "tickers": [company.ticker] if company.name in title else [],
    }


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path
