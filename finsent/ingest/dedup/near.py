"""The near-duplicate index: MinHash LSH over a sliding event-time horizon, in memory, no I/O.

Similarity, and why (pairs measured with exact Jaccard on the features of ``keys.shingles``):

* Features are the title's content words (stopwords dropped, a trailing plural "s" cut) plus
  their adjacent pairs. 3-word shingles fail on headlines: "Fed holds rates steady, signals
  patience" vs "Fed holds interest rates steady and signals patience" share no 3-word shingle
  (J = 0); with these features J = 0.71, while unrelated headlines sharing a few words score
  0.1-0.3 (e.g. "Stocks rally as tech shares rebound" vs "Stocks slide as tech shares tumble":
  0.29).
* The body is left out unless the title has fewer than ``short_title_words`` content words:
  outlets write their own summaries for the same wire story, and mixing them in pulls true
  duplicates below any useful threshold; a very short title alone is too ambiguous, though.
* Jaccard threshold 0.5 on 128 permutations (estimate s.d. about 0.045 at 0.5). LSH bands are
  fixed at r = 4 rows (32 bands for 128), so a pair at J = 0.5 becomes a candidate with
  probability 0.87 and at J = 0.3 with 0.23; candidates are then kept only if their MinHash
  estimate reaches the threshold, and the highest wins.
* Two stories that both carry tickers but share none are never near duplicates: template
  headlines ("Apple shares rise after earnings beat" vs the same for Microsoft, J = 0.64) differ
  only in the company. Without tickers such pairs (also "Fed/ECB holds rates steady") do merge.

Determinism: MinHash permutations come from a fixed seed and the hash of each feature is SHA-1,
and candidates are ranked by (similarity, newer event time, smaller id).

Memory: about 4.4 KiB per indexed story at 128 permutations (2.5 KiB at 64), so some 210 MiB
for 48 h at 1,000 stories an hour; the LSH's band tables dominate.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
from datasketch import MinHash

log = logging.getLogger(__name__)

SCHEME = "affine32"  # datasketch >= 2.0: uint32 hash values, stored as 4 bytes each
BAND_ROWS = 4
# Ids per LSH bucket: a query meets at most bands x BUCKET_CAP candidates.
BUCKET_CAP = 8


@cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Generating permutations costs more than hashing a headline: make them once per setting.
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


# Each feature's 32-bit SHA-1, as datasketch's sha1_hash32 gives it, remembered: headlines
# reuse their words and word pairs, and SHA-1 was a third of the signature's cost. Cleared
# when full, so memory stays bounded on any feed.
_FEATURE_HASHES: dict[str, int] = {}
_FEATURE_HASHES_MAX = 200_000
# Features hashed at once: bounds the (features x num_perm) working array at ~8 MiB.
_FEATURES_PER_BLOCK = 16_384


def _feature_hashes(features: list[str]) -> np.ndarray:
    """Each feature's 32-bit SHA-1 (datasketch's ``sha1_hash32``), from memory when it can."""
    known = _FEATURE_HASHES
    values = [known.get(g) for g in features]
    if None in values:
        if len(known) + len(features) > _FEATURE_HASHES_MAX:
            known.clear()
        for i, value in enumerate(values):
            if value is None:
                gram = features[i]
                value = int.from_bytes(hashlib.sha1(gram.encode("utf-8")).digest()[:4], "little")
                values[i] = value
                if len(known) < _FEATURE_HASHES_MAX:
                    known[gram] = value
    return np.array(values, dtype=np.uint32)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def minhash_signatures(
    feature_sets: Sequence[Collection[str]],
    num_perm: int,
    seed: int,
    *,
    block_features: int = _FEATURES_PER_BLOCK,
) -> np.ndarray:
    """The MinHash values of each non-empty feature set, one row of ``num_perm`` uint32s each.

    The same values as datasketch's ``MinHash(scheme="affine32").update_batch`` (a test holds
    them side by side), computed for a whole batch in a few array operations: per story, its
    features' hashes x the affine permutations, reduced by minimum over its run of rows.
    """
    if any(not features for features in feature_sets):
        raise ValueError("a feature set is empty: it has no MinHash signature")
    a, b = _permutations(num_perm, seed)
    signatures = np.empty((len(feature_sets), num_perm), dtype=np.uint32)
    first = 0
    while first < len(feature_sets):
        last, total = first, 0
        while last < len(feature_sets) and (last == first or total < block_features):
            total += len(feature_sets[last])
            last += 1
        block = feature_sets[first:last]
        hashes = _feature_hashes([g for features in block for g in features])
        # (features, num_perm): uint32 products wrap, which is the scheme's arithmetic.
        permuted = _fmix32(hashes)[:, None] * a + b
        starts = np.cumsum([0] + [len(features) for features in block[:-1]])
        signatures[first:last] = np.minimum.reduceat(permuted, starts, axis=0)
        first = last
    return signatures


def minhash_signature(grams: Collection[str], num_perm: int, seed: int) -> np.ndarray:
    """The MinHash values of a non-empty feature set, as ``num_perm`` uint32s."""
    return minhash_signatures([grams], num_perm, seed)[0]


class BandIndex:
    """MinHash LSH: a story is a candidate for another when all ``BAND_ROWS`` values of one of
    their bands agree. One dict per band maps a band's bytes to its bucket: the one story id,
    or an insertion-ordered dict of ids once it holds two, at most ``BUCKET_CAP`` of them (the
    newest; the oldest is evicted).

    The candidates are datasketch's ``MinHashLSH`` with ``(bands, BAND_ROWS)`` params while no
    bucket overflows (a test holds them side by side); its per-band byte swaps and storage
    layers were two thirds of dedup's time. Nearly every bucket holds a single story, so one
    string per bucket instead of a set keeps memory down. The cap bounds a query's candidates,
    hence its cost, however alike headlines get: templated titles ("Stock X rises 2% after
    earnings") that differ only in their company fill the same buckets without ever joining a
    chain, and a query once compared itself with all of them. A long chain of true copies keeps
    its newest members in every band, and they are what the next copy matches.
    """

    def __init__(self, num_perm: int) -> None:
        if num_perm % BAND_ROWS:
            raise ValueError(f"num_perm must be a multiple of {BAND_ROWS}")
        self.bands = num_perm // BAND_ROWS
        self.tables: list[dict[bytes, Any]] = [{} for _ in range(self.bands)]
        self._keys: dict[str, list[bytes]] = {}

    def band_keys(self, signature: np.ndarray) -> list[bytes]:
        # Slicing the bytes once costs a tenth of a tobytes() per band.
        data = np.ascontiguousarray(signature, dtype="<u4").tobytes()
        width = 4 * BAND_ROWS
        return [data[i : i + width] for i in range(0, len(data), width)]

    def __len__(self) -> int:
        return len(self._keys)

    def insert(self, story_id: str, signature: np.ndarray) -> None:
        if story_id in self._keys:
            self.remove(story_id)
        keys = self.band_keys(signature)
        self._keys[story_id] = keys
        for table, key in zip(self.tables, keys, strict=True):
            bucket = table.get(key)
            if bucket is None:
                table[key] = story_id
            elif isinstance(bucket, str):
                table[key] = {bucket: None, story_id: None}
            else:
                if len(bucket) >= BUCKET_CAP:
                    del bucket[next(iter(bucket))]
                bucket[story_id] = None

    def query(self, signature: np.ndarray) -> set[str]:
        found: set[str] = set()
        for table, key in zip(self.tables, self.band_keys(signature), strict=True):
            bucket = table.get(key)
            if bucket is None:
                continue
            if isinstance(bucket, str):
                found.add(bucket)
            else:
                found.update(bucket)
        return found

    def remove(self, story_id: str) -> None:
        for table, key in zip(self.tables, self._keys.pop(story_id), strict=True):
            bucket = table.get(key)
            if bucket is None:
                continue
            if isinstance(bucket, str):
                if bucket == story_id:
                    del table[key]
                continue
            bucket.pop(story_id, None)  # absent when the cap evicted it
            if len(bucket) == 1:
                table[key] = next(iter(bucket))
            elif not bucket:
                del table[key]


@dataclass(slots=True)
class IndexedStory:
    chain_id: str
    event_time: datetime
    signature: np.ndarray
    tickers: frozenset[str]
    seq: int


class NearDupIndex:
    """The stories of the last ``horizon`` of event time, by MinHash LSH, with chain sizes.

    ``advance`` moves the watermark (the newest event time indexed) and evicts what fell behind
    it by more than the horizon. Beyond ``max_stories`` the oldest (by event time) go too, so
    memory is bounded whatever the feed's rate.
    """

    def __init__(
        self,
        *,
        num_perm: int,
        seed: int,
        horizon: timedelta,
        threshold: float,
        max_stories: int | None = None,
    ) -> None:
        self.seed = seed
        self.horizon = horizon
        self.threshold = threshold
        self.max_stories = max_stories
        self.evicted_for_room = 0  # stories dropped by ``max_stories`` before their horizon
        self.lsh = BandIndex(num_perm)
        self.entries: dict[str, IndexedStory] = {}
        self.chain_sizes: Counter[str] = Counter()
        self.watermark: datetime | None = None  # the newest event time indexed
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = 0

    def behind_horizon(self, event_time: datetime) -> bool:
        return self.watermark is not None and event_time < self.watermark - self.horizon

    def advance(self, event_time: datetime) -> None:
        """Move the watermark and evict what fell behind the horizon."""
        if self.watermark is None or event_time > self.watermark:
            self.watermark = event_time
        cutoff = self.watermark - self.horizon
        while self._heap and self._heap[0][0] < cutoff:
            self._drop_oldest()

    def best_match(
        self, signature: np.ndarray, tickers: frozenset[str]
    ) -> tuple[str, IndexedStory, float] | None:
        """The closest indexed story at or above the threshold: (id, entry, similarity)."""
        best: tuple[float, float, str] | None = None
        n = len(signature)
        for story_id in self.lsh.query(signature):
            entry = self.entries[story_id]
            if tickers and entry.tickers and not tickers & entry.tickers:
                continue  # both name companies, different ones: a template headline
            similarity = int(np.count_nonzero(entry.signature == signature)) / n
            if similarity < self.threshold:
                continue
            # Highest similarity, then the newer story, then the smaller id: a total order,
            # so the set order of LSH candidates never shows.
            rank = (-similarity, -entry.event_time.timestamp(), story_id)
            if best is None or rank < best:
                best = rank
        if best is None:
            return None
        return best[2], self.entries[best[2]], -best[0]

    def add(
        self,
        story_id: str,
        chain_id: str,
        event_time: datetime,
        signature: np.ndarray,
        tickers: frozenset[str],
    ) -> None:
        old = self.entries.get(story_id)
        if old is not None:
            self._drop(story_id, old)
        self._seq += 1
        self.entries[story_id] = IndexedStory(chain_id, event_time, signature, tickers, self._seq)
        self.chain_sizes[chain_id] += 1
        heapq.heappush(self._heap, (event_time, self._seq, story_id))
        self.lsh.insert(story_id, signature)
        if self.max_stories is not None:
            while len(self.entries) > self.max_stories:
                if not self._drop_oldest():
                    continue  # a stale heap entry (the story was re-added or dropped)
                if self.evicted_for_room == 0:
                    log.warning(
                        "the near-duplicate index is full (%d stories, "
                        "FINSENT_DEDUP_MAX_INDEXED): the oldest are dropped before their "
                        "%s horizon, and new stories are compared with the newest only",
                        self.max_stories,
                        self.horizon,
                    )
                self.evicted_for_room += 1

    def _drop_oldest(self) -> bool:
        """Pop the heap's oldest entry and drop its story; False if the entry was stale."""
        _, seq, story_id = heapq.heappop(self._heap)
        entry = self.entries.get(story_id)
        if entry is None or entry.seq != seq:
            return False
        self._drop(story_id, entry)
        return True

    def _drop(self, story_id: str, entry: IndexedStory) -> None:
        del self.entries[story_id]
        self.lsh.remove(story_id)
        self.chain_sizes[entry.chain_id] -= 1
        if self.chain_sizes[entry.chain_id] <= 0:
            del self.chain_sizes[entry.chain_id]
