"""Duplicates, story chains and novelty for ingest, in four layers, each fed already-normalized
``NewsItem``s (canonical-URL id, clean title):

* ``keys``: title and URL normalization, the exact-duplicate keys, and the near-duplicate
  features.
* ``seen``: ``SeenStore``, the persistent exact-dedup memory (the store's ``ingest_seen``
  table), which survives restarts. **Exact duplicates** are the same canonical URL (forever,
  until pruned), or the same normalized title (lower-cased, punctuation stripped, whitespace
  folded) within the horizon, so a recurring headline such as "Stocks making the biggest moves
  midday" is news again tomorrow. The verdict is ``"duplicate"`` with the original story's id;
  the caller drops and counts it.
* ``near``: **near duplicates** (syndicated rewrites of one headline), clustered with MinHash
  LSH over a sliding event-time horizon (48 h by default): entries older than the horizon behind
  the newest event time seen are evicted.
* ``novelty``: ``NoveltyTracker``, which combines them into verdicts, chains and novelty scores.

Determinism: fixed-seed permutations, a total order on candidates, and ``now`` always passed in.
"""

from finsent.ingest.dedup.keys import normalize_title, shingles, title_key, url_key
from finsent.ingest.dedup.novelty import (
    NoveltyConfig,
    NoveltyTracker,
    Verdict,
    VerdictKind,
    apply_verdict,
    novelty_score,
)
from finsent.ingest.dedup.seen import SeenEntry, SeenKey, SeenKind, SeenStore

__all__ = [
    "NoveltyConfig",
    "NoveltyTracker",
    "SeenEntry",
    "SeenKey",
    "SeenKind",
    "SeenStore",
    "Verdict",
    "VerdictKind",
    "apply_verdict",
    "normalize_title",
    "novelty_score",
    "shingles",
    "title_key",
    "url_key",
]
