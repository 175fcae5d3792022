from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from finsent.ingest.dedup import shingles
from finsent.ingest.dedup.near import BUCKET_CAP, NearDupIndex, minhash_signature, new_lsh

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


def test_compact_lsh_buckets_answer_like_datasketchs_own() -> None:
    rng = random.Random(3)
    words = [f"w{i}" for i in range(20)]
    lean = {
        f"s{i}": LeanMinHash(
            seed=1,
            hashvalues=minhash_signature(shingles(" ".join(rng.sample(words, 6))), 64, 1),
            scheme="affine32",
        )
        for i in range(300)
    }
    compact, plain = new_lsh(64), MinHashLSH(num_perm=64, params=(16, 4))
    assert type(compact.hashtables[0]).__name__ == "_CompactBuckets"
    for key, mh in lean.items():
        compact.insert(key, mh)
        plain.insert(key, mh)
    for key in list(lean)[::2]:
        compact.remove(key)
        plain.remove(key)
    for mh in lean.values():
        found, everything = set(compact.query(mh)), set(plain.query(mh))
        # Each band's bucket keeps only its newest BUCKET_CAP ids, so crowded buckets lose some.
        assert found <= everything
        assert len(found) <= len(compact.hashtables) * BUCKET_CAP
    assert sum(len(plain.query(mh)) > 1 for mh in lean.values()) > 20  # buckets were shared


def test_compact_lsh_buckets_match_datasketchs_own_below_the_cap() -> None:
    rng = random.Random(4)
    words = [f"w{i}" for i in range(400)]
    lean = {
        f"s{i}": LeanMinHash(
            seed=1,
            hashvalues=minhash_signature(shingles(" ".join(rng.sample(words, 6))), 64, 1),
            scheme="affine32",
        )
        for i in range(300)
    }
    compact, plain = new_lsh(64), MinHashLSH(num_perm=64, params=(16, 4))
    for key, mh in lean.items():
        compact.insert(key, mh)
        plain.insert(key, mh)
    for key in list(lean)[::3]:
        compact.remove(key)
        plain.remove(key)
    assert max(len(t.get(k)) for t in plain.hashtables for k in t.keys()) < BUCKET_CAP  # noqa: SIM118 (a storage, not a dict)
    for mh in lean.values():
        assert sorted(compact.query(mh)) == sorted(plain.query(mh))


def test_templated_titles_meet_a_bounded_number_of_candidates() -> None:
    # Titles that differ only in their company (and tickers) share every bucket but never
    # chain: without a cap a query's candidates grew with every one indexed.
    idx = index()
    bands = len(idx.lsh.hashtables)
    for i in range(600):
        title = f"Stock CO{i} rises 3% after quarterly earnings beat"
        signature, tickers = sig(title), frozenset({f"CO{i}"})
        assert len(idx.lsh.query(idx_lean(idx, signature))) <= bands * BUCKET_CAP
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


def idx_lean(idx: NearDupIndex, signature: np.ndarray) -> LeanMinHash:
    return LeanMinHash(seed=idx.seed, hashvalues=signature, scheme="affine32")
