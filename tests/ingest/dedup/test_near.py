from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from finsent.ingest.dedup import near, shingles
from finsent.ingest.dedup.near import (
    BUCKET_CAP,
    SCHEME,
    BandIndex,
    NearDupIndex,
    minhash_signature,
    minhash_signatures,
)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
FED = "Fed holds rates steady, signals patience"
FED_2 = "Fed holds interest rates steady and signals patience"


def index(horizon: timedelta = timedelta(hours=48)) -> NearDupIndex:
    return NearDupIndex(num_perm=128, seed=1, horizon=horizon, threshold=0.5)


def sig(title: str) -> np.ndarray:
    return minhash_signature(shingles(title), 128, 1)


def test_signatures_are_deterministic_uint32s() -> None:
    one, again = sig(FED), sig(FED)
    assert one.dtype.name == "uint32" and one.shape == (128,)
    assert (one == again).all()
    assert not (one == minhash_signature(shingles(FED), 128, 2)).all()  # the seed matters


@settings(max_examples=60, deadline=None)
@given(
    feature_sets=st.lists(
        st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=40), min_size=1, max_size=30
    ),
    block=st.integers(min_value=1, max_value=200),
    num_perm=st.sampled_from([8, 64, 128]),
)
def test_batch_signatures_equal_datasketchs_minhash(
    feature_sets: list[set[str]], block: int, num_perm: int
) -> None:
    # Stored signatures were written by datasketch: the batch form must not move one value,
    # whatever the block size that splits the batch.
    batch = minhash_signatures(feature_sets, num_perm, 7, block_features=block)
    for features, row in zip(feature_sets, batch, strict=True):
        reference = MinHash(num_perm=num_perm, seed=7, scheme=SCHEME)
        reference.update_batch([f.encode("utf-8") for f in features])
        assert (np.asarray(reference.hashvalues, dtype=np.uint32) == row).all()


def test_the_feature_hash_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(near, "_FEATURE_HASHES", {})
    monkeypatch.setattr(near, "_FEATURE_HASHES_MAX", 50)
    first = minhash_signatures([{f"word{i}" for i in range(200)}], 64, 1)
    assert len(near._FEATURE_HASHES) <= 50
    again = minhash_signatures([{f"word{i}" for i in range(200)}], 64, 1)
    assert (first == again).all()


def test_an_empty_feature_set_has_no_signature() -> None:
    with pytest.raises(ValueError, match="empty"):
        minhash_signatures([{"fed"}, set()], 64, 1)


def test_best_match_finds_a_rewrite_and_respects_tickers() -> None:
    idx = index()
    idx.add("a", "a", T0, sig(FED), frozenset())
    match = idx.best_match(sig(FED_2), frozenset())
    assert match is not None and match[0] == "a" and match[2] >= 0.5
    idx.add("apple", "apple", T0, sig("Apple shares rise after earnings beat"), frozenset({"AAPL"}))
    msft = sig("Microsoft shares rise after earnings beat")
    assert idx.best_match(msft, frozenset({"MSFT"})) is None  # both name companies, not one


def test_advance_evicts_behind_the_horizon_and_shrinks_chains() -> None:
    idx = index(horizon=timedelta(hours=1))
    idx.add("a", "c", T0, sig(FED), frozenset())
    idx.add("b", "c", T0 + timedelta(minutes=30), sig(FED_2), frozenset())
    assert idx.chain_sizes["c"] == 2
    idx.advance(T0 + timedelta(minutes=70))
    assert set(idx.entries) == {"b"} and idx.chain_sizes["c"] == 1
    assert idx.behind_horizon(T0) and not idx.behind_horizon(T0 + timedelta(minutes=30))
    idx.advance(T0 + timedelta(hours=3))
    assert idx.entries == {} and "c" not in idx.chain_sizes
    assert idx.best_match(sig(FED), frozenset()) is None


def test_a_full_index_drops_its_oldest_stories_and_stays_bounded(caplog) -> None:
    """A feed faster than ``max_stories`` per horizon: memory stays bounded, the oldest go
    first (by event time), and the newest still match."""
    idx = NearDupIndex(
        num_perm=64, seed=1, horizon=timedelta(hours=48), threshold=0.5, max_stories=50
    )
    signatures = random_signatures(2_000, 200, seed=3)
    for i, (story_id, signature) in enumerate(signatures.items()):
        idx.add(story_id, story_id, T0 + timedelta(seconds=i), signature, frozenset())
        assert len(idx.entries) == len(idx.lsh) == min(i + 1, 50)
    assert set(idx.entries) == set(list(signatures)[-50:])
    assert idx.evicted_for_room == 150 and sum(idx.chain_sizes.values()) == 50
    newest = list(signatures)[-1]
    match = idx.best_match(signatures[newest], frozenset())
    assert match is not None and match[0] == newest
    oldest = list(signatures)[0]
    assert all(m[0] != oldest for m in [idx.best_match(signatures[oldest], frozenset())] if m)
    assert sum("near-duplicate index is full" in r.message for r in caplog.records) == 1


def random_signatures(vocabulary: int, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    return {
        f"s{i}": minhash_signature(shingles(" ".join(rng.sample(words, 6))), 64, 1)
        for i in range(n)
    }


def datasketch_lsh(signatures: dict[str, np.ndarray]) -> MinHashLSH:
    plain = MinHashLSH(num_perm=64, params=(16, 4))
    for key, signature in signatures.items():
        plain.insert(key, lean(signature))
    return plain


def lean(signature: np.ndarray) -> LeanMinHash:
    return LeanMinHash(seed=1, hashvalues=signature, scheme="affine32")


def test_band_index_answers_like_datasketchs_lsh_below_the_cap() -> None:
    signatures = random_signatures(400, 300, seed=4)
    index, plain = BandIndex(64), datasketch_lsh(signatures)
    for key, signature in signatures.items():
        index.insert(key, signature)
    for key in list(signatures)[::3]:
        index.remove(key)
        plain.remove(key)
    assert max(len(t.get(k)) for t in plain.hashtables for k in t.keys()) < BUCKET_CAP  # noqa: SIM118 (a storage, not a dict)
    for signature in signatures.values():
        assert index.query(signature) == set(plain.query(lean(signature)))
    assert len(index) == 200


def test_a_crowded_band_index_answers_a_bounded_part_of_datasketchs() -> None:
    signatures = random_signatures(20, 300, seed=3)  # few words: buckets overflow
    index, plain = BandIndex(64), datasketch_lsh(signatures)
    for key, signature in signatures.items():
        index.insert(key, signature)
    for key in list(signatures)[::2]:
        index.remove(key)
        plain.remove(key)
    for signature in signatures.values():
        found = index.query(signature)
        assert found <= set(plain.query(lean(signature)))
        assert len(found) <= index.bands * BUCKET_CAP
    assert sum(len(plain.query(lean(sig))) > 1 for sig in signatures.values()) > 20
    for key in list(signatures)[1::2]:  # emptied: nothing is left in any band
        index.remove(key)
    assert index.tables == [{} for _ in range(index.bands)]


def test_templated_titles_meet_a_bounded_number_of_candidates() -> None:
    # Titles that differ only in their company (and tickers) share every bucket but never
    # chain: without a cap a query's candidates grew with every one indexed.
    idx = index()
    bands = idx.lsh.bands
    for i in range(600):
        title = f"Stock CO{i} rises 3% after quarterly earnings beat"
        signature, tickers = sig(title), frozenset({f"CO{i}"})
        assert len(idx.lsh.query(signature)) <= bands * BUCKET_CAP
        assert idx.best_match(signature, tickers) is None
        idx.add(f"s{i}", f"s{i}", T0 + timedelta(seconds=i), signature, tickers)
    assert len(idx.entries) == 600  # all indexed; only the buckets are capped


def test_a_long_chain_of_copies_still_chains_past_the_cap() -> None:
    idx = index()
    for i in range(5 * BUCKET_CAP):
        signature = sig(f"Market wrap: stocks rise {i % 9}.{i % 7}% as investors weigh rates")
        match = idx.best_match(signature, frozenset())
        chain = "wrap" if i == 0 else (match[1].chain_id if match else f"new{i}")
        assert chain == "wrap"
        idx.add(f"s{i}", chain, T0 + timedelta(minutes=i), signature, frozenset())
    assert idx.chain_sizes["wrap"] == 5 * BUCKET_CAP
