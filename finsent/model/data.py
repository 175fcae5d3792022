"""Labelled and unlabelled text for the attention model: loaders, fixed splits and batching.

Every loader returns `Example`s whose labels are indices into `SENTIMENTS` and `TOPICS`, or
`None` where a source has no such label; the training loss masks the missing ones.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.settings import Settings, default_datasets_dir
from finsent.core.vocabulary import SENTIMENTS
from finsent.model.topics import TOPICS

PHRASEBANK_LEVELS = ("50Agree", "66Agree", "75Agree", "AllAgree")
# Twitter Financial News labels: 0 bearish, 1 bullish, 2 neutral.
_TWITTER_SENTIMENT = {"0": "negative", "1": "positive", "2": "neutral"}
_SENTIMENT_ALIASES = {
    "negative": "negative",
    "neg": "negative",
    "bearish": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "positive": "positive",
    "pos": "positive",
    "bullish": "positive",
}
IGNORE = -100  # label index the loss skips (torch's cross-entropy default)


class DataError(ValueError):
    """A dataset file is missing or does not have the expected shape."""


@dataclass(frozen=True)
class Example:
    text: str
    sentiment: int | None  # index into SENTIMENTS
    topic: int | None  # index into TOPICS
    source: str


def sentiment_index(label: str) -> int:
    try:
        return SENTIMENTS.index(_SENTIMENT_ALIASES[label.strip().lower()])
    except KeyError:
        raise DataError(f"unknown sentiment label {label!r}") from None


def topic_index(label: str) -> int:
    try:
        return TOPICS.index(label.strip())
    except ValueError:
        raise DataError(f"unknown topic {label!r}; expected one of the 20 analyst topics") from None


def text_key(text: str) -> str:
    """Identity of a sentence across files: case and whitespace folded."""
    return re.sub(r"\s+", " ", text).strip().lower()


def datasets_dir() -> Path:
    """`FINSENT_DATASETS_DIR` (settings.datasets_dir), else the user's data folder
    (`~/.local/share/finsent/datasets`)."""
    configured = Settings.load().datasets_dir
    return configured if configured is not None else default_datasets_dir()


def require_datasets(root: Path) -> Path:
    """``root`` when it is a folder, else a DataError that says how to name the right one."""
    if not root.is_dir():
        raise DataError(
            f"datasets folder {root} not found: pass --data DIR or set FINSENT_DATASETS_DIR"
            " to the folder that holds financial_phrasebank/, twitter_financial_news_sentiment/"
            " and headline_labels_silver/"
        )
    return root


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"dataset file not found: {path}")
    return path


# ---- loaders -------------------------------------------------------------------------------


def load_phrasebank(path: Path, level: str = "50Agree") -> list[Example]:
    """Financial PhraseBank: latin-1 lines `sentence@label`; `path` is the folder or one file."""
    if level not in PHRASEBANK_LEVELS:
        raise DataError(f"unknown PhraseBank level {level!r}; one of {PHRASEBANK_LEVELS}")
    file = path / f"Sentences_{level}.txt" if path.is_dir() else path
    examples = []
    with _require(file).open(encoding="latin-1", newline="") as lines:
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            # The sentence itself may contain '@', so only the last one separates the label.
            text, sep, label = line.rpartition("@")
            if not sep or not text.strip():
                raise DataError(f"{file.name}:{number}: expected 'sentence@label'")
            examples.append(Example(text.strip(), sentiment_index(label), None, "phrasebank"))
    return examples


def load_twitter(path: Path) -> list[Example]:
    """Twitter Financial News sentiment CSV (`text,label`)."""
    examples = []
    with _require(path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                label = _TWITTER_SENTIMENT[row["label"].strip()]
            except KeyError:
                raise DataError(f"{path.name}: unknown label {row.get('label')!r}") from None
            examples.append(Example(row["text"].strip(), sentiment_index(label), None, "twitter"))
    return examples


def load_twitter_topic(path: Path) -> list[Example]:
    """Twitter Financial News topic CSV (`text,label`): label n is the n-th analyst topic."""
    examples = []
    with _require(path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                topic = int(row["label"])
            except (KeyError, ValueError):
                raise DataError(f"{path.name}: bad label {row.get('label')!r}") from None
            if not 0 <= topic < len(TOPICS):
                raise DataError(f"{path.name}: topic {topic} is not one of the 20")
            examples.append(Example(row["text"].strip(), None, topic, "twitter-topic"))
    return examples


def load_silver(path: Path, split: str | None = None) -> list[Example]:
    """`headline_labels_silver`: topic and sentiment per headline; `split` is train/valid/test."""
    file = path / "headlines_silver.csv" if path.is_dir() else path
    examples = []
    with _require(file).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if split is not None and row["split"] != split:
                continue
            examples.append(
                Example(
                    row["text"].strip(),
                    sentiment_index(row["sentiment"]),
                    topic_index(row["topic"]),
                    "silver",
                )
            )
    return examples


def load_table(
    path: Path,
    text_column: str = "text",
    sentiment_column: str | None = "sentiment",
    topic_column: str | None = None,
) -> list[Example]:
    """Users' own data: CSV or JSONL with a text column and a sentiment and/or topic column.

    Sentiment accepts negative/neutral/positive (or neg/neu/pos, bearish/bullish); topics must
    be among the 20 analyst topics. An empty label cell means "no label" for that task.
    """
    if sentiment_column is None and topic_column is None:
        raise DataError("name at least one label column")
    _require(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    examples = []
    for number, row in enumerate(rows, 1):
        if text_column not in row:
            raise DataError(f"{path.name}: row {number} has no {text_column!r} column")
        sentiment = _cell(row, sentiment_column)
        topic = _cell(row, topic_column)
        examples.append(
            Example(
                str(row[text_column]).strip(),
                sentiment_index(sentiment) if sentiment else None,
                topic_index(topic) if topic else None,
                path.stem,
            )
        )
    return examples


def _cell(row: dict, column: str | None) -> str:
    if column is None or row.get(column) is None:
        return ""
    return str(row[column]).strip()


# The replay corpora, by source: the silver headlines were drawn from them, so a model can be
# trained without one source's silver labels (and headlines) and tested on them.
REPLAY_SOURCES = ("reuters-guardian", "rss-2023")


def replay_headlines(root: Path, source: str) -> Iterator[str]:
    """The raw titles of one replay corpus under `root` (none where it is absent)."""
    if source == "reuters-guardian":
        news = root / "news_headlines_reuters_guardian_2017_2019"
        for name in ("reuters_headlines_2018-2019.csv", "guardian_headlines_2017-2019.csv"):
            file = news / name
            if file.exists():
                with file.open(encoding="utf-8", newline="") as f:
                    for row in csv.DictReader(f):
                        yield row.get("Headlines") or ""
    elif source == "rss-2023":
        rss = root / "rss_link_db_2023_business_h1" / "2023"
        if rss.exists():
            from finsent.core.feed_files import read_archive  # the replay's reader of both shapes

            for _, _, entry in read_archive(rss):
                if isinstance(entry, dict):
                    yield html.unescape(str(entry.get("title") or ""))
    else:
        raise DataError(f"unknown headline source {source!r}; one of {', '.join(REPLAY_SOURCES)}")


def unlabelled_headlines(
    root: Path, exclude: Iterable[str] = (), hold_out: Iterable[str] = ()
) -> list[str]:
    """Headlines of the replay corpora (Reuters/Guardian 2017–19, RSS 2023 H1), deduplicated.

    `exclude` drops texts (e.g. evaluation sentences) so pretraining never sees a test text;
    `hold_out` drops whole sources (`REPLAY_SOURCES`).
    """
    sources = [source for source in REPLAY_SOURCES if source not in set(hold_out)]
    skip = {text_key(t) for t in exclude}
    seen: set[str] = set()
    titles: list[str] = []
    for source in sources:
        for title in replay_headlines(root, source):
            key = text_key(title)
            if key and key not in skip and key not in seen:
                seen.add(key)
                titles.append(" ".join(title.split()))
    return titles


def source_of_headlines(root: Path) -> dict[str, str]:
    """text_key → the replay source it appears in (the first, where in both)."""
    found: dict[str, str] = {}
    for source in REPLAY_SOURCES:
        for title in replay_headlines(root, source):
            found.setdefault(text_key(html.unescape(title)), source)
    return found


# ---- splits --------------------------------------------------------------------------------


def stratified_split(
    examples: Sequence[Example],
    test_fraction: float,
    seed: int,
    label: Callable[[Example], object] = lambda e: (e.sentiment, e.topic),
) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split: per label, a seeded shuffle of the input order.

    Each class gives round(n * test_fraction) examples to the test part, so class shares are
    kept. The same input, fraction and seed always give the same split.
    """
    by_label: dict[object, list[int]] = {}
    for index, example in enumerate(examples):
        by_label.setdefault(label(example), []).append(index)
    rng = random.Random(seed)
    test_indices: set[int] = set()
    for key in sorted(by_label, key=repr):
        indices = by_label[key][:]
        rng.shuffle(indices)
        test_indices.update(indices[: round(len(indices) * test_fraction)])
    train = [e for i, e in enumerate(examples) if i not in test_indices]
    test = [e for i, e in enumerate(examples) if i in test_indices]
    return train, test


@dataclass
class Corpus:
    """The fixed splits that `finsent train` fits on and `finsent evaluate` reports on."""

    train: list[Example]
    valid: list[Example]
    tests: dict[str, list[Example]]
    files: list[Path] = field(default_factory=list)  # hashed into the artifact

    def with_extra(self, examples: Sequence[Example], valid_fraction: float = 0.1) -> Corpus:
        """Users' own labelled data joins training and validation (split 90/10, seed 0)."""
        test_keys = {text_key(e.text) for rows in self.tests.values() for e in rows}
        fresh = [e for e in _dedupe(examples) if text_key(e.text) not in test_keys]
        train, valid = stratified_split(fresh, valid_fraction, SPLIT_SEED)
        return Corpus([*self.train, *train], [*self.valid, *valid], self.tests, self.files)

    def summary(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "valid": len(self.valid),
            **{f"test:{name}": len(rows) for name, rows in self.tests.items()},
        }


SPLIT_SEED = 0  # fixed: evaluation splits must not move between runs or seeds


def standard_corpus(
    root: Path | None = None,
    valid_fraction: float = 0.1,
    hold_out: Sequence[str] = (),
    by_source: bool = False,
) -> Corpus:
    """Train/valid/test over the datasets under ``root`` (default ``datasets_dir()``), with no
    test text in train or valid.

    ``hold_out``: replay sources (`REPLAY_SOURCES`) whose silver headlines stay out of training
    and validation, to measure how the model does on a source it has never seen. With it, or
    with ``by_source``, the silver test split is also reported per source
    (``silver-test-<source>``).

    - PhraseBank 50Agree and AllAgree each get a stratified 80/20 split (seed 0); the
      files are nested, so any sentence in either test part is removed from training.
    - Twitter: `sent_valid.csv` is the test set; validation is carved out of train.
    - Silver headlines: the dataset's own train/valid/test column.
    - Twitter topics, where the folder is there: `topic_valid.csv` is the test set; validation
      is carved out of train, stratified by topic.
    """
    root = require_datasets(root or datasets_dir())
    pb_dir = root / "financial_phrasebank"
    pb50 = load_phrasebank(pb_dir, "50Agree")
    pb_all = load_phrasebank(pb_dir, "AllAgree")
    pb50_rest, pb50_test = stratified_split(pb50, 0.2, SPLIT_SEED)
    _, pb_all_test = stratified_split(pb_all, 0.2, SPLIT_SEED)
    held_out = {text_key(e.text) for e in (*pb50_test, *pb_all_test)}
    pb_pool = _dedupe(e for e in pb50_rest if text_key(e.text) not in held_out)

    tw_dir = root / "twitter_financial_news_sentiment"
    tw_pool = _dedupe(load_twitter(tw_dir / "sent_train.csv"))
    tw_test = load_twitter(tw_dir / "sent_valid.csv")

    silver_dir = root / "headline_labels_silver"
    silver_train = load_silver(silver_dir, "train")
    silver_valid = load_silver(silver_dir, "valid")
    silver_test = load_silver(silver_dir, "test")
    unknown = set(hold_out) - set(REPLAY_SOURCES)
    if unknown:
        raise DataError(f"unknown headline sources {sorted(unknown)}; {', '.join(REPLAY_SOURCES)}")
    source_tests: dict[str, list[Example]] = {}
    if hold_out or by_source:
        source = source_of_headlines(root)
        silver_train = [e for e in silver_train if source.get(text_key(e.text)) not in hold_out]
        silver_valid = [e for e in silver_valid if source.get(text_key(e.text)) not in hold_out]
        for name in REPLAY_SOURCES:
            rows = [e for e in silver_test if source.get(text_key(e.text)) == name]
            if rows:
                source_tests[f"silver-test-{name}"] = rows

    topic_dir = root / "twitter_financial_news_topic"
    has_topics = (topic_dir / "topic_train.csv").exists()
    topic_pool = _dedupe(load_twitter_topic(topic_dir / "topic_train.csv")) if has_topics else []
    topic_test = load_twitter_topic(topic_dir / "topic_valid.csv") if has_topics else []

    # No test text may reach training or validation, whichever file it came from.
    test_keys = {text_key(e.text) for e in (*tw_test, *silver_test, *topic_test)} | held_out

    def unseen(rows: Iterable[Example]) -> list[Example]:
        return [e for e in rows if text_key(e.text) not in test_keys]

    pb_train, pb_valid = stratified_split(unseen(pb_pool), valid_fraction, SPLIT_SEED)
    tw_train, tw_valid = stratified_split(unseen(tw_pool), valid_fraction, SPLIT_SEED)
    topic_train, topic_valid = stratified_split(unseen(topic_pool), valid_fraction, SPLIT_SEED)
    tests = {
        "phrasebank-50agree": pb50_test,
        "phrasebank-allagree": pb_all_test,
        "twitter-valid": tw_test,
        "silver-test": silver_test,
        **source_tests,
    }
    files = [
        pb_dir / "Sentences_50Agree.txt",
        pb_dir / "Sentences_AllAgree.txt",
        tw_dir / "sent_train.csv",
        tw_dir / "sent_valid.csv",
        silver_dir / "headlines_silver.csv",
    ]
    if has_topics:
        tests["twitter-topic-valid"] = topic_test
        files += [topic_dir / "topic_train.csv", topic_dir / "topic_valid.csv"]
    return Corpus(
        train=[*pb_train, *tw_train, *unseen(silver_train), *topic_train],
        valid=[*pb_valid, *tw_valid, *unseen(silver_valid), *topic_valid],
        tests=tests,
        files=files,
    )


def _dedupe(examples: Iterable[Example]) -> list[Example]:
    seen: set[str] = set()
    kept = []
    for example in examples:
        key = text_key(example.text)
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- batching ------------------------------------------------------------------------------


def length_buckets(
    lengths: Sequence[int], batch_size: int, seed: int | None, pool: int = 50
) -> Iterator[list[int]]:
    """Batches of indices with similar lengths, so dynamic padding wastes little work.

    With a seed: shuffle, sort within pools of `pool` batches, then shuffle the batches.
    Without: one pass in length order (inference).
    """
    order = list(range(len(lengths)))
    if seed is None:
        order.sort(key=lambda i: lengths[i])
        yield from (order[i : i + batch_size] for i in range(0, len(order), batch_size))
        return
    rng = random.Random(seed)
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = sorted(order[start : start + step], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches
