"""The novelty tracker: exact duplicates from the ``SeenStore``, story chains from the
near-duplicate index, and each story's novelty score.

A story that matches nothing starts a chain (chain id = its own id, novelty 100); one that
matches joins the chain of its closest earlier match and scores ``100 * decay ** k``, k being
the number of earlier stories of that chain still inside the horizon (decay 0.75: 100, 75,
56.25, 42.19, ...; never below 0). Once a chain's last story has left the horizon, the next
similar story starts a fresh chain at 100 (as in RavenPack's event novelty score).

Batching: ``decide_batch`` looks up every key of a micro-batch in one query and ``commit`` writes
all new rows in one transaction (optionally the caller's, with its offsets). Commit after the
stories are safely produced: a crash in between re-decides them, never loses them. If the
delivery or the commit fails, ``rollback`` drops the pending rows and rebuilds the index from
the table. One tracker per
table: concurrent trackers would not see each other's near duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from finsent.core.records import NewsItem, utc
from finsent.ingest.dedup.keys import normalize_title, normalized_shingles, text_key, url_key
from finsent.ingest.dedup.near import BAND_ROWS, NearDupIndex, minhash_signatures
from finsent.ingest.dedup.seen import SeenEntry, SeenKey, SeenKind, SeenStore

log = logging.getLogger(__name__)

VerdictKind = Literal["new", "repeat", "duplicate"]


@dataclass(frozen=True, slots=True)
class NoveltyConfig:
    horizon: timedelta = timedelta(hours=48)  # 24-72 h is the sensible range
    # Stories the near-duplicate index holds at most (about 4.4 KiB each): a feed faster than
    # this many per horizon is compared with its newest ones only, and memory stays bounded.
    max_indexed: int = 100_000
    threshold: float = 0.5  # MinHash-estimated Jaccard at or above which stories are one
    num_perm: int = 128  # 64 halves memory and hashing at a noisier estimate (s.d. ~0.06)
    seed: int = 1  # fixed: the permutations, hence every verdict, are reproducible
    decay: float = 0.75  # novelty = 100 * decay ** (earlier stories of the chain in the horizon)
    short_title_words: int = 4  # fewer content words than this: add the body's head
    body_words: int = 30

    def __post_init__(self) -> None:
        if self.horizon <= timedelta(0):
            raise ValueError("horizon must be positive")
        if self.max_indexed < 1:
            raise ValueError("max_indexed must be at least 1")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError("decay must be in [0, 1)")
        if self.num_perm < 2 * BAND_ROWS or self.num_perm % BAND_ROWS:
            raise ValueError(
                f"num_perm must be a multiple of {BAND_ROWS}, at least {2 * BAND_ROWS}"
            )


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    story_id: str
    chain_id: str
    novelty: float  # 100 for new, less for a repeat, 0 for a duplicate (it is dropped)
    duplicate_of: str | None = None  # duplicate: the original story's id
    duplicate_by: SeenKind | None = None  # duplicate: which key matched
    similar_to: str | None = None  # repeat: the closest earlier story
    similarity: float | None = None  # repeat: its estimated Jaccard similarity


def apply_verdict(item: NewsItem, verdict: Verdict) -> NewsItem:
    """The item with the verdict's novelty and chain id."""
    return replace(item, novelty=verdict.novelty, chain_id=verdict.chain_id)


def novelty_score(earlier: int, decay: float = 0.75) -> float:
    """100 for the first story of a chain, then geometric decay: 100, 75, 56.25, ... >= 0."""
    return round(100.0 * decay ** max(earlier, 0), 2)


@dataclass(frozen=True, slots=True)
class _Keyed:
    item: NewsItem
    normalized: str  # the title's
    url: SeenKey | None
    title: SeenKey | None

    @classmethod
    def of(cls, item: NewsItem) -> _Keyed:
        normalized = normalize_title(item.title)
        return cls(
            item,
            normalized,
            ("url", url_key(item.url)) if item.url.strip() else None,
            ("title", text_key(normalized)) if normalized else None,
        )


def _index_for(config: NoveltyConfig) -> NearDupIndex:
    return NearDupIndex(
        num_perm=config.num_perm,
        seed=config.seed,
        horizon=config.horizon,
        threshold=config.threshold,
        max_stories=config.max_indexed,
    )


class NoveltyTracker:
    """Exact dedup through a ``SeenStore``, near-dup chains and novelty in memory.

    ``decide_batch`` is the core: it needs only the store's lookups and ``now``; the rows it
    would write wait in ``pending`` until ``commit``. ``process``/``process_batch`` do both.
    Exact-dedup state lives in the table; the LSH is in memory, and the table also keeps each
    indexed story's MinHash values, chain id, position and event time, so ``restore`` rebuilds
    the same index after a restart.
    """

    def __init__(self, store: SeenStore, config: NoveltyConfig | None = None) -> None:
        self.store = store
        self.config = config or NoveltyConfig()
        self._index = _index_for(self.config)
        # Rows decided but not yet committed: (entry, replace an existing row?).
        self._pending: dict[SeenKey, tuple[SeenEntry, bool]] = {}

    @classmethod
    def restore(
        cls, store: SeenStore, now: datetime, config: NoveltyConfig | None = None
    ) -> NoveltyTracker:
        """A tracker whose index holds the stored stories within the horizon, as before."""
        tracker = cls(store, config)
        tracker._index = tracker._stored_index(now)
        return tracker

    def rollback(self, now: datetime) -> None:
        """Forget every verdict since the last ``commit``: their stories were not delivered, so
        the next poll must find them new again, not duplicates of what nobody received. The
        near-duplicate index is rebuilt from the table, which holds only committed stories."""
        self._pending.clear()
        self._index = self._stored_index(now)

    def _stored_index(self, now: datetime) -> NearDupIndex:
        """The index of the stored stories within the horizon."""
        cfg = self.config
        index = _index_for(cfg)
        newest = self.store.newest_signature_time()
        if newest is None:
            return index
        watermark = min(newest, utc(now))
        skipped = 0
        for row in self.store.signatures_since(watermark - cfg.horizon):
            signature = np.frombuffer(row.signature or b"", dtype="<u4").astype(np.uint32)
            if len(signature) != cfg.num_perm:
                skipped += 1  # written under another num_perm: cannot be compared
                continue
            index.add(row.story_id, row.chain_id, row.event_time, signature, frozenset(row.tickers))
        index.advance(watermark)
        if skipped:
            log.warning("restore skipped %d stories signed with another num_perm", skipped)
        return index

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def indexed(self) -> int:
        """Stories now in the near-duplicate index."""
        return len(self._index.entries)

    def process(self, item: NewsItem, now: datetime) -> Verdict:
        return self.process_batch([item], now)[0]

    def process_batch(
        self, items: Sequence[NewsItem], now: datetime, *, conn: Any = None
    ) -> list[Verdict]:
        verdicts = self.decide_batch(items, now)
        self.commit(conn=conn)
        return verdicts

    def commit(self, *, conn: Any = None) -> int:
        """Write the pending rows in one transaction (``conn``'s, if given); returns their number."""
        if not self._pending:
            return 0
        keep = [entry for entry, overwrite in self._pending.values() if not overwrite]
        overwrite = [entry for entry, overwrite in self._pending.values() if overwrite]
        if conn is None:
            with self.store.engine.begin() as own:
                self._write(own, keep, overwrite)
        else:
            self._write(conn, keep, overwrite)
        written = len(self._pending)
        self._pending.clear()
        return written

    def _write(self, conn: Any, keep: list[SeenEntry], overwrite: list[SeenEntry]) -> None:
        self.store.remember_many(keep, conn=conn)
        self.store.remember_many(overwrite, replace=True, conn=conn)

    def prune(self, now: datetime, keep: timedelta = timedelta(days=30)) -> int:
        """Forget rows first seen more than ``keep`` ago (at least the horizon)."""
        if keep < self.config.horizon:
            raise ValueError("keep must cover the horizon, or restore would lose chains")
        return self.store.forget_older_than(utc(now) - keep)

    def decide_batch(self, items: Sequence[NewsItem], now: datetime) -> list[Verdict]:
        """Verdicts for ``items`` in order, each seeing the ones before it.

        Updates the in-memory index; the rows for the table wait in ``pending`` for ``commit``.
        """
        now = utc(now)
        keyed = [_Keyed.of(item) for item in items]
        wanted = {
            key
            for k in keyed
            for key in (k.url, k.title)
            if key is not None and key not in self._pending
        }
        found = self.store.lookup_many(wanted) if wanted else {}
        signatures = self._signatures(keyed, found)
        return [self._decide(k, now, found, signatures.get(i)) for i, k in enumerate(keyed)]

    def _features(self, keyed: _Keyed) -> set[str]:
        """What a story is compared on; none when it has no row to carry its signature."""
        if keyed.title is None and keyed.url is None:
            return set()
        cfg = self.config
        body = keyed.item.body
        return normalized_shingles(keyed.normalized, body, cfg.short_title_words, cfg.body_words)

    def _signatures(
        self, keyed: Sequence[_Keyed], found: Mapping[SeenKey, SeenEntry]
    ) -> dict[int, np.ndarray]:
        """The MinHash signature of each story that may be new, by position, in one batch.

        A story whose URL is already remembered is a duplicate whatever else happens, so it is
        not signed (most of a poll's stories, which were seen on the previous poll)."""
        positions, features = [], []
        for i, k in enumerate(keyed):
            if k.url is not None and (k.url in self._pending or k.url in found):
                continue
            grams = self._features(k)
            if grams:
                positions.append(i)
                features.append(grams)
        if not features:
            return {}
        rows = minhash_signatures(features, self.config.num_perm, self.config.seed)
        return dict(zip(positions, rows, strict=True))

    def _seen(self, key: SeenKey | None, found: Mapping[SeenKey, SeenEntry]) -> SeenEntry | None:
        if key is None:
            return None
        if key in self._pending:
            return self._pending[key][0]
        return found.get(key)

    def _stage(self, entry: SeenEntry, *, overwrite: bool = False) -> None:
        key = (entry.kind, entry.key)
        previous = self._pending.get(key)
        self._pending[key] = (entry, overwrite or (previous is not None and previous[1]))

    def _decide(
        self,
        keyed: _Keyed,
        now: datetime,
        found: Mapping[SeenKey, SeenEntry],
        signature: np.ndarray | None,
    ) -> Verdict:
        """``signature``: from ``_signatures``; None for a story without features, and for one
        whose URL is already remembered (a duplicate, so never indexed)."""
        cfg = self.config
        item, url, title = keyed.item, keyed.url, keyed.title
        # A story cannot come from the future: a skewed feed clock must not evict the horizon.
        event_time = min(item.published_at, now)
        url_hit = self._seen(url, found)
        title_hit = self._seen(title, found)
        title_stale = title_hit is not None and event_time - title_hit.event_time > cfg.horizon
        if title_stale:
            title_hit = None

        original = url_hit or title_hit
        if original is not None:
            # Remember this copy's other key too, so its next poll is caught by either.
            for key, hit in ((url, url_hit), (title, title_hit)):
                if key is not None and hit is None and not (key == title and title_stale):
                    self._stage(
                        replace(original, kind=key[0], key=key[1], first_seen=now, signature=None)
                    )
            return Verdict(
                kind="duplicate",
                story_id=item.id,
                chain_id=original.chain_id,
                novelty=0.0,
                duplicate_of=original.story_id,
                duplicate_by="url" if url_hit is not None else "title",
            )

        tickers = frozenset(item.tickers)
        # The signature rides on the title row (on the URL row if the title has no words), so
        # only a story with such a row is indexed: memory and table stay in step.
        carrier = title or url

        chain_id, earlier, match = item.id, 0, None
        if signature is not None:
            self._index.advance(event_time)
            match = self._index.best_match(signature, tickers)
            if match is not None:
                chain_id = match[1].chain_id
                earlier = self._index.chain_sizes[chain_id]
            # A story already behind the horizon may join a chain but is not indexed itself.
            if not self._index.behind_horizon(event_time):
                self._index.add(item.id, chain_id, event_time, signature, tickers)
        novelty = novelty_score(earlier, cfg.decay)

        sorted_tickers = tuple(sorted(tickers))
        for key in (url, title):
            if key is not None:
                blob = (
                    signature.astype("<u4").tobytes()
                    if key == carrier and signature is not None
                    else None
                )
                # Built whole, not by dataclasses.replace: this runs for every story.
                entry = SeenEntry(
                    kind=key[0],
                    key=key[1],
                    story_id=item.id,
                    chain_id=chain_id,
                    first_seen=now,
                    event_time=event_time,
                    chain_pos=earlier,
                    novelty=novelty,
                    tickers=sorted_tickers,
                    signature=blob,
                )
                self._stage(entry, overwrite=key == title and title_stale)
        if match is None:
            return Verdict(kind="new", story_id=item.id, chain_id=chain_id, novelty=novelty)
        return Verdict(
            kind="repeat",
            story_id=item.id,
            chain_id=chain_id,
            novelty=novelty,
            similar_to=match[0],
            similarity=match[2],
        )
