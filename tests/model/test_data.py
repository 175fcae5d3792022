"""Dataset loaders, fixed splits and batching, on small fixture files written per test."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.data import (
    DataError,
    Example,
    length_buckets,
    load_phrasebank,
    load_silver,
    load_table,
    load_twitter,
    load_twitter_topic,
    standard_corpus,
    stratified_split,
    text_key,
    unlabelled_headlines,
)
from finsent.model.topics import TOPICS

NEG, NEU, POS = (SENTIMENTS.index(s) for s in ("negative", "neutral", "positive"))


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def phrasebank_file(path: Path, lines: list[str]) -> Path:
    return write_bytes(path, "".join(f"{line}\r\n" for line in lines).encode("latin-1"))


# ---- PhraseBank ----------------------------------------------------------------------------


def test_phrasebank_latin1_crlf_and_last_at(tmp_path: Path) -> None:
    phrasebank_file(
        tmp_path / "Sentences_50Agree.txt",
        [
            "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .@positive",
            "Kesko's chief Jürgen Möller said sales were flat .@neutral",
            "Contact ir@firm.fi for the report , shares fell 5 % .@negative",
            "",
        ],
    )
    examples = load_phrasebank(tmp_path)  # folder + default level
    assert [e.text for e in examples] == [
        "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .",
        "Kesko's chief Jürgen Möller said sales were flat .",
        "Contact ir@firm.fi for the report , shares fell 5 % .",
    ]
    assert [e.sentiment for e in examples] == [POS, NEU, NEG]
    assert all(e.topic is None and e.source == "phrasebank" for e in examples)
    assert not any("\r" in e.text or "\n" in e.text for e in examples)


def test_phrasebank_level_and_single_file(tmp_path: Path) -> None:
    phrasebank_file(tmp_path / "Sentences_AllAgree.txt", ["Net sales grew .@positive"])
    phrasebank_file(tmp_path / "other.txt", ["Costs rose .@negative"])
    assert [e.sentiment for e in load_phrasebank(tmp_path, "AllAgree")] == [POS]
    assert [e.text for e in load_phrasebank(tmp_path / "other.txt")] == ["Costs rose ."]


def test_phrasebank_rejects_unknown_label(tmp_path: Path) -> None:
    phrasebank_file(tmp_path / "Sentences_50Agree.txt", ["Fine .@neutral", "Odd .@sideways"])
    with pytest.raises(DataError, match="sideways"):
        load_phrasebank(tmp_path)


def test_phrasebank_rejects_unknown_level(tmp_path: Path) -> None:
    phrasebank_file(tmp_path / "Sentences_50Agree.txt", ["Fine .@neutral"])
    with pytest.raises(DataError, match="level"):
        load_phrasebank(tmp_path, "90Agree")


def test_phrasebank_rejects_line_without_label_and_missing_file(tmp_path: Path) -> None:
    phrasebank_file(tmp_path / "Sentences_50Agree.txt", ["no separator here"])
    with pytest.raises(DataError, match=":1:"):
        load_phrasebank(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_phrasebank(tmp_path, "66Agree")


# ---- Twitter and silver --------------------------------------------------------------------


def test_twitter_labels_and_quoted_commas(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "sent_train.csv",
        (
            b"text,label\n"
            b'"$AAPL slides, misses estimates",0\n'
            b'"$MSFT jumps 5%, beats on cloud",1\n'
            b"Company to hold annual meeting,2\n"
        ),
    )
    examples = load_twitter(path)
    assert [e.text for e in examples] == [
        "$AAPL slides, misses estimates",
        "$MSFT jumps 5%, beats on cloud",
        "Company to hold annual meeting",
    ]
    assert [SENTIMENTS[e.sentiment] for e in examples] == ["negative", "positive", "neutral"]
    assert all(e.topic is None and e.source == "twitter" for e in examples)


def test_twitter_rejects_unknown_label(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text", "label"], [["a", 0], ["b", 3]])
    with pytest.raises(DataError, match="unknown label"):
        load_twitter(path)


SILVER_HEADER = ["key", "text", "topic", "sentiment", "confidence", "split"]


def test_silver_maps_labels_and_filters_split(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "headlines_silver.csv",
        SILVER_HEADER,
        [
            ["k1", "Fed holds rates steady", "Fed | Central Banks", "neutral", 0.9, "train"],
            ["k2", " Acme beats, raises guidance ", "Earnings", "positive", 0.8, "test"],
            ["k3", "Oil slumps on glut", "Energy | Oil", "negative", 0.7, "valid"],
        ],
    )
    everything = load_silver(tmp_path)
    assert [(e.text, e.sentiment, e.topic) for e in everything] == [
        ("Fed holds rates steady", NEU, TOPICS.index("Fed | Central Banks")),
        ("Acme beats, raises guidance", POS, TOPICS.index("Earnings")),
        ("Oil slumps on glut", NEG, TOPICS.index("Energy | Oil")),
    ]
    assert all(e.source == "silver" for e in everything)
    assert [e.text for e in load_silver(tmp_path, "test")] == ["Acme beats, raises guidance"]
    assert [e.text for e in load_silver(tmp_path / "headlines_silver.csv", "valid")] == [
        "Oil slumps on glut"
    ]
    assert load_silver(tmp_path, "nope") == []


# ---- load_table ----------------------------------------------------------------------------


def test_load_table_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mine.csv",
        ["text", "sentiment", "topic"],
        [
            ["Bank fails", "Bearish", "Financials"],
            ["Gold at record", "", "Gold | Metals | Materials"],
            ["Dull day", "neu", ""],
        ],
    )
    examples = load_table(path, topic_column="topic")
    assert examples == [
        Example("Bank fails", NEG, TOPICS.index("Financials"), "mine"),
        Example("Gold at record", None, TOPICS.index("Gold | Metals | Materials"), "mine"),
        Example("Dull day", NEU, None, "mine"),
    ]
    # Without a topic column, topics are None.
    assert [e.topic for e in load_table(path)] == [None, None, None]


def test_load_table_jsonl(tmp_path: Path) -> None:
    rows = [
        {"headline": "IPO prices above range", "label": "pos", "topic": "IPO"},
        {"headline": "No label here", "label": "", "topic": None},
        {"headline": "Missing keys"},
    ]
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    examples = load_table(
        path, text_column="headline", sentiment_column="label", topic_column="topic"
    )
    assert examples == [
        Example("IPO prices above range", POS, TOPICS.index("IPO"), "feed"),
        Example("No label here", None, None, "feed"),
        Example("Missing keys", None, None, "feed"),
    ]


def test_load_table_errors(tmp_path: Path) -> None:
    bad_topic = write_csv(tmp_path / "a.csv", ["text", "topic"], [["x", "Crypto"]])
    with pytest.raises(DataError, match="unknown topic"):
        load_table(bad_topic, sentiment_column=None, topic_column="topic")
    bad_sentiment = write_csv(tmp_path / "b.csv", ["text", "sentiment"], [["x", "meh"]])
    with pytest.raises(DataError, match="unknown sentiment"):
        load_table(bad_sentiment)
    no_text = write_csv(tmp_path / "c.csv", ["body", "sentiment"], [["x", "pos"]])
    with pytest.raises(DataError, match="no 'text' column"):
        load_table(no_text)
    with pytest.raises(DataError, match="label column"):
        load_table(bad_sentiment, sentiment_column=None, topic_column=None)
    with pytest.raises(DataError, match="not found"):
        load_table(tmp_path / "missing.csv")


# ---- stratified_split ----------------------------------------------------------------------


def make_examples(labels: list[tuple[int | None, int | None]]) -> list[Example]:
    return [Example(f"text {i}", s, t, "t") for i, (s, t) in enumerate(labels)]


def check_split(examples: list[Example], fraction: float, seed: int) -> None:
    train, test = stratified_split(examples, fraction, seed)
    # Deterministic.
    assert stratified_split(examples, fraction, seed) == (train, test)
    # A partition of the input (texts are unique), each part in input order.
    assert not {e.text for e in train} & {e.text for e in test}
    assert Counter(train) + Counter(test) == Counter(examples)
    assert train == [e for e in examples if e in set(train)]
    assert test == [e for e in examples if e in set(test)]
    # Per class, round(n * fraction) go to test.
    per_class = Counter((e.sentiment, e.topic) for e in examples)
    in_test = Counter((e.sentiment, e.topic) for e in test)
    for label, n in per_class.items():
        assert in_test[label] == round(n * fraction)


def test_stratified_split_keeps_proportions() -> None:
    labels = [(NEG, None)] * 10 + [(NEU, None)] * 30 + [(POS, 3)] * 20 + [(POS, None)] * 5
    examples = make_examples(labels)
    check_split(examples, 0.2, seed=0)
    _, test = stratified_split(examples, 0.2, 0)
    assert Counter(e.sentiment for e in test) == {NEG: 2, NEU: 6, POS: 4 + 1}
    # A different seed picks different examples but the same counts.
    _, other = stratified_split(examples, 0.2, 1)
    assert other != test
    assert Counter((e.sentiment, e.topic) for e in other) == Counter(
        (e.sentiment, e.topic) for e in test
    )


def test_stratified_split_custom_label() -> None:
    examples = make_examples([(NEG, 0), (NEG, 1), (NEG, 2), (NEG, 3), (POS, 0), (POS, 1)])
    _, test = stratified_split(examples, 0.5, 0, label=lambda e: e.sentiment)
    assert Counter(e.sentiment for e in test) == {NEG: 2, POS: 1}


@given(
    labels=st.lists(
        st.tuples(st.sampled_from([None, 0, 1, 2]), st.sampled_from([None, 0, 5])), max_size=60
    ),
    fraction=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_stratified_split_property(
    labels: list[tuple[int | None, int | None]], fraction: float, seed: int
) -> None:
    check_split(make_examples(labels), fraction, seed)


# ---- length_buckets ------------------------------------------------------------------------


def test_length_buckets_sorted_without_seed() -> None:
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = list(length_buckets(lengths, batch_size=3, seed=None))
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)


@given(
    lengths=st.lists(st.integers(1, 64), max_size=200),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 1000),
    pool=st.integers(1, 4),
)
def test_length_buckets_property(lengths: list[int], batch_size: int, seed: int, pool: int) -> None:
    batches = list(length_buckets(lengths, batch_size, seed, pool=pool))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert batches == list(length_buckets(lengths, batch_size, seed, pool=pool))
    ordered = list(length_buckets(lengths, batch_size, None))
    assert sorted(i for b in ordered for i in b) == list(range(len(lengths)))
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)


def test_length_buckets_seeded_batches_are_length_sorted() -> None:
    lengths = [(i * 37) % 50 + 1 for i in range(100)]
    batches = list(length_buckets(lengths, batch_size=10, seed=3, pool=100))
    assert batches == list(length_buckets(lengths, batch_size=10, seed=3, pool=100))
    assert batches != list(length_buckets(lengths, batch_size=10, seed=4, pool=100))
    # One pool holds everything, so each batch is a contiguous run of the sorted lengths.
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:], strict=False))


# ---- unlabelled_headlines ------------------------------------------------------------------


def test_unlabelled_headlines(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "news_headlines_reuters_guardian_2017_2019" / "reuters_headlines_2018-2019.csv",
        ["Time", "Headlines"],
        [
            ["Jul 18 2020", "Stocks  rally on   trade hopes"],
            ["Jul 18 2020", "stocks rally on trade hopes"],  # duplicate by text_key
            ["Jul 17 2020", "Evaluation sentence here"],
            ["Jul 17 2020", ""],
        ],
    )
    day = tmp_path / "rss_link_db_2023_business_h1" / "2023" / "01" / "2023-01-01"
    day.mkdir(parents=True)
    (day / "x_entries.json").write_text(
        json.dumps(
            {
                "entries": [
                    {"title": "Fed &amp; ECB hold rates"},
                    {"title": "STOCKS RALLY ON TRADE HOPES"},
                    {"title": None},
                    {"link": "no title"},
                ]
            }
        ),
        encoding="utf-8",
    )
    day2 = day.parent / "2023-01-02"
    day2.mkdir()
    (day2 / "y_entries.json").write_text(
        json.dumps([{"title": "Oil &lt;$80&gt; as OPEC meets"}, {"title": "Fed & ECB hold rates"}]),
        encoding="utf-8",
    )
    (day2 / "y_meta.json").write_text(json.dumps([{"title": "Not an entries file"}]))

    titles = unlabelled_headlines(tmp_path, exclude=["  EVALUATION sentence   here "])
    assert titles == [
        "Stocks rally on trade hopes",
        "Fed & ECB hold rates",
        "Oil <$80> as OPEC meets",
    ]


def test_unlabelled_headlines_empty_root(tmp_path: Path) -> None:
    assert unlabelled_headlines(tmp_path) == []


def test_text_key_folds_case_and_whitespace() -> None:
    assert text_key("  Shares\tFALL\n 5 % ") == "shares fall 5 %"


# ---- standard_corpus -----------------------------------------------------------------------


def fake_datasets(root: Path) -> None:
    """A tiny datasets tree with deliberate cross-file duplicates of test texts."""
    labels = ["negative", "neutral", "positive"]
    pb50 = [f"PhraseBank {s} sentence {i} ." for s in labels for i in range(10)]
    pb50_labels = [s for s in labels for _ in range(10)]
    pb_dir = root / "financial_phrasebank"
    phrasebank_file(
        pb_dir / "Sentences_50Agree.txt",
        [f"{t}@{s}" for t, s in zip(pb50, pb50_labels, strict=True)],
    )
    # AllAgree is a subset of 50Agree: the first five of each class.
    all_agree = [
        (t, s) for k, (t, s) in enumerate(zip(pb50, pb50_labels, strict=True)) if k % 10 < 5
    ]
    phrasebank_file(pb_dir / "Sentences_AllAgree.txt", [f"{t}@{s}" for t, s in all_agree])

    tw_dir = root / "twitter_financial_news_sentiment"
    tw_test = [[f"Tweet test {c} number {i}", c] for c in (0, 1, 2) for i in range(3)]
    write_csv(tw_dir / "sent_valid.csv", ["text", "label"], tw_test)
    tw_train = [[f"Tweet train {c} number {i}", c] for c in (0, 1, 2) for i in range(10)]
    # Overlaps: every twitter test text, and every PhraseBank sentence, also sits in
    # twitter train (case and spacing changed), so any leak into train or valid shows.
    tw_train += [[f"  {t.upper()} ", c] for t, c in tw_test]
    code = {"negative": 0, "positive": 1, "neutral": 2}
    tw_train += [[t.lower(), code[s]] for t, s in zip(pb50, pb50_labels, strict=True)]
    write_csv(tw_dir / "sent_train.csv", ["text", "label"], tw_train)

    rows = []
    for split, n in (("train", 6), ("valid", 3), ("test", 3)):
        for i in range(n):
            rows.append(
                [f"{split}{i}", f"Silver {split} headline {i}", "Markets", "neutral", 0.9, split]
            )
    # The same headline under two splits, as happens with syndicated news.
    rows.append(["dup-v", "silver test headline 0", "Markets", "neutral", 0.9, "valid"])
    rows.append(["dup-t", "Silver TEST headline 1", "Markets", "neutral", 0.9, "train"])
    write_csv(root / "headline_labels_silver" / "headlines_silver.csv", SILVER_HEADER, rows)


def fake_topic_tweets(root: Path) -> None:
    """Topic tweets, one of whose test texts also sits in topic train and one in sentiment
    train, so any leak shows."""
    topic_dir = root / "twitter_financial_news_topic"
    test = [[f"Topic tweet test {t} number {i}", t] for t in (0, 4, 19) for i in range(2)]
    train = [[f"Topic tweet train {t} number {i}", t] for t in (0, 4, 19) for i in range(10)]
    train.append([test[0][0].upper(), test[0][1]])
    write_csv(topic_dir / "topic_valid.csv", ["text", "label"], test)
    write_csv(topic_dir / "topic_train.csv", ["text", "label"], train)


@pytest.fixture
def corpus_root(tmp_path: Path) -> Path:
    fake_datasets(tmp_path)
    return tmp_path


def test_standard_corpus_shape(corpus_root: Path) -> None:
    corpus = standard_corpus(corpus_root)
    assert set(corpus.tests) == {
        "phrasebank-50agree",
        "phrasebank-allagree",
        "twitter-valid",
        "silver-test",
    }
    summary = corpus.summary()
    assert summary["test:phrasebank-50agree"] == 3 * round(10 * 0.2)
    assert summary["test:phrasebank-allagree"] == 3 * round(5 * 0.2)
    assert summary["test:twitter-valid"] == 9
    assert summary["test:silver-test"] == 3
    assert summary["train"] > 0 and summary["valid"] > 0
    assert all(p.exists() for p in corpus.files)
    # Deterministic.
    again = standard_corpus(corpus_root)
    assert (again.train, again.valid, again.tests) == (corpus.train, corpus.valid, corpus.tests)


def test_topic_tweets_join_training_and_get_their_own_test_set(corpus_root: Path) -> None:
    without = standard_corpus(corpus_root)
    fake_topic_tweets(corpus_root)
    corpus = standard_corpus(corpus_root)
    assert len(corpus.tests["twitter-topic-valid"]) == 6
    topics = [e for e in (*corpus.train, *corpus.valid) if e.source == "twitter-topic"]
    assert len(topics) == 30  # the copy of a test tweet is left out
    assert {e.sentiment for e in topics} == {None}
    assert {TOPICS[e.topic] for e in topics if e.topic is not None} == {
        "Analyst Update",
        "Dividend",
        "Stock Movement",
    }
    assert 0 < sum(e.source == "twitter-topic" for e in corpus.valid) < 30
    # The other splits do not move.
    assert {k: v for k, v in corpus.tests.items() if k != "twitter-topic-valid"} == without.tests
    assert [e for e in corpus.train if e.source != "twitter-topic"] == without.train
    assert {p.name for p in corpus.files} >= {"topic_train.csv", "topic_valid.csv"}


def test_topic_tweets_with_a_label_out_of_range_are_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["text", "label"], [["fine", 3], ["odd", 20]])
    with pytest.raises(DataError, match="topic 20 is not one of the 20"):
        load_twitter_topic(tmp_path / "t.csv")
    write_csv(tmp_path / "u.csv", ["text", "label"], [["fine", "Dividend"]])
    with pytest.raises(DataError, match="bad label 'Dividend'"):
        load_twitter_topic(tmp_path / "u.csv")


def test_standard_corpus_train_has_no_test_text(corpus_root: Path) -> None:
    corpus = standard_corpus(corpus_root)
    test_keys = {text_key(e.text) for rows in corpus.tests.values() for e in rows}
    leaked = sorted({text_key(e.text) for e in corpus.train} & test_keys)
    assert leaked == []


def test_standard_corpus_valid_has_no_test_text(corpus_root: Path) -> None:
    corpus = standard_corpus(corpus_root)
    test_keys = {text_key(e.text) for rows in corpus.tests.values() for e in rows}
    leaked = sorted({text_key(e.text) for e in corpus.valid} & test_keys)
    assert leaked == []


def test_users_data_joins_training_but_never_a_test_text(corpus_root: Path) -> None:
    corpus = standard_corpus(corpus_root)
    a_test_text = corpus.tests["twitter-valid"][0].text
    own = [Example(f"our desk note {i}", i % 3, None, "desk") for i in range(20)]
    own.append(Example(a_test_text, 0, None, "desk"))
    grown = corpus.with_extra(own)
    added = [e for e in (*grown.train, *grown.valid) if e.source == "desk"]
    assert len(added) == 20 and a_test_text not in {e.text for e in added}
    assert 0 < sum(e.source == "desk" for e in grown.valid) < 20
    assert grown.tests == corpus.tests


def _replay_sources_of_silver(root: Path) -> None:
    """Reuters/Guardian carries silver train 0–2 and test 0; the RSS archive, train 3–5 and
    test 1 and 2 (one title with an entity, unescaped as the silver texts are)."""
    write_csv(
        root / "news_headlines_reuters_guardian_2017_2019" / "guardian_headlines_2017-2019.csv",
        ["Time", "Headlines"],
        [["2018", f"Silver train headline {i}"] for i in range(3)]
        + [["2018", "silver test headline 0"], ["2018", "A Guardian headline no one labelled"]],
    )
    day = root / "rss_link_db_2023_business_h1" / "2023" / "01" / "2023-01-01"
    day.mkdir(parents=True)
    titles = [f"Silver train headline {i}" for i in range(3, 6)]
    titles += ["Silver test headline 1", "Silver &#116;est headline 2"]
    (day / "x_entries.json").write_text(
        json.dumps([{"title": t} for t in titles]), encoding="utf-8"
    )


def test_a_held_out_source_leaves_training_and_is_tested_apart(corpus_root: Path) -> None:
    _replay_sources_of_silver(corpus_root)
    everything = standard_corpus(corpus_root, by_source=True)
    assert [e.text for e in everything.tests["silver-test-reuters-guardian"]] == [
        "Silver test headline 0"
    ]
    assert [e.text for e in everything.tests["silver-test-rss-2023"]] == [
        "Silver test headline 1",
        "Silver test headline 2",
    ]
    assert standard_corpus(corpus_root).tests.keys() < everything.tests.keys()

    held = standard_corpus(corpus_root, hold_out=["rss-2023"])
    silver = {e.text for e in held.train + held.valid if e.source == "silver"}
    assert not silver & {f"Silver train headline {i}" for i in range(3, 6)}
    assert {f"Silver train headline {i}" for i in range(3)} <= silver
    assert held.tests == everything.tests  # the same test rows, whatever is held out
    # Its unlabelled headlines stay out of distillation too (TrainConfig.hold_out_sources).
    pool = unlabelled_headlines(corpus_root, hold_out=["rss-2023"])
    assert "A Guardian headline no one labelled" in pool
    assert not {"Silver train headline 3", "Silver test headline 1"} & set(pool)
    with pytest.raises(DataError, match="unknown headline sources"):
        standard_corpus(corpus_root, hold_out=["bloomberg"])
