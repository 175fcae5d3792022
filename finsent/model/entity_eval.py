"""Per-company sentiment measured on FinEntity (Tang et al., EMNLP 2023; ODC-BY 1.0).

FinEntity labels 2,131 company (and index, commodity) mentions in 979 financial-news texts as
negative, neutral or positive. The texts are split by document, never by row: a document is
held out when its text key (case and whitespace folded, SHA-1, as the dataset's ``keys.txt``)
is odd, so the 11 documents that repeat another's text fall on the same side as it. The
methods were designed on the other half; ``bench/bench_entity_sentiment.py`` prints both.

"Mixed" is the subset that matters: documents whose entities do not all share one label.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finsent.model.data import DataError
from finsent.model.entity_sentiment import Mention, Probabilities, entity_probabilities

FINENTITY = Path("finentity") / "finentity_entity_level.csv"
LABELS = ("negative", "neutral", "positive")  # the file's 0, 1, 2
# Reuters instrument codes ("<JNJ.N>") and story codes ("[nL4N2Z028U]"): wire markup that a
# headline never carries. Blanked to spaces, so the entity offsets still hold.
_WIRE_CODES = re.compile(r"<[^<>\s]{1,20}>|\[n[A-Z0-9]{6,14}\]")


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    start: int
    end: int
    label: int  # index into LABELS


@dataclass(frozen=True, slots=True)
class EntityDoc:
    doc_id: int
    key: str  # sha1 of the folded text, 16 hex digits
    text: str
    entities: tuple[Entity, ...]

    @property
    def mixed(self) -> bool:
        return len({e.label for e in self.entities}) > 1

    @property
    def held_out(self) -> bool:
        return int(self.key, 16) % 2 == 1


def document_key(text: str) -> str:
    """The dataset's own key (SOURCE.md): sha1 of the lower-cased, whitespace-folded text."""
    return hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()[:16]


def load_finentity(datasets: Path) -> list[EntityDoc]:
    """The documents of ``datasets/finentity``, in doc_id order (DataError when absent)."""
    path = datasets / FINENTITY
    if not path.exists():
        raise DataError(f"dataset file not found: {path}")
    texts: dict[int, str] = {}
    entities: dict[int, list[Entity]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            doc = int(row["doc_id"])
            texts[doc] = row["text"]
            entities.setdefault(doc, []).append(
                Entity(row["entity"], int(row["start"]), int(row["end"]), int(row["label"]))
            )
    return [
        EntityDoc(
            doc_id=doc,
            key=document_key(text),
            text=_WIRE_CODES.sub(lambda m: " " * len(m.group()), text),
            entities=tuple(entities[doc]),
        )
        for doc, text in sorted(texts.items())
    ]


# A method: the model's probabilities and documents in, one label index per entity out.
Method = Callable[[Probabilities, Sequence[EntityDoc]], list[list[int]]]


def whole_text(probabilities: Probabilities, docs: Sequence[EntityDoc]) -> list[list[int]]:
    """The baseline, what the pipeline did before: every entity gets the text's sentiment."""
    labels = probabilities([doc.text for doc in docs]).argmax(-1)
    return [[int(label)] * len(doc.entities) for doc, label in zip(docs, labels, strict=True)]


def by_clause(sources: bool) -> Method:
    """Each entity's own clauses (``finsent.model.entity_sentiment``), with or without the
    source rule."""

    def method(probabilities: Probabilities, docs: Sequence[EntityDoc]) -> list[list[int]]:
        mentions = [[Mention(str(k), e.start) for k, e in enumerate(doc.entities)] for doc in docs]
        found = entity_probabilities(
            probabilities, [doc.text for doc in docs], mentions, sources=sources
        )
        return [
            [
                LABELS.index("neutral") if p is None else int(p.argmax())
                for p in (per_key[str(k)] for k in range(len(doc.entities)))
            ]
            for doc, per_key in zip(docs, found, strict=True)
        ]

    return method


METHODS: dict[str, Method] = {
    "whole text (before)": whole_text,
    "clauses": by_clause(sources=False),
    "clauses + source rule (chosen)": by_clause(sources=True),
}
CHOSEN = "clauses + source rule (chosen)"
BASELINE = "whole text (before)"


@dataclass(frozen=True, slots=True)
class Scores:
    n: int  # entities
    accuracy: float
    macro_f1: float


def scores(truth: Sequence[int], predicted: Sequence[int]) -> Scores:
    from sklearn.metrics import f1_score

    y, p = np.asarray(truth), np.asarray(predicted)
    f1 = f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
    return Scores(len(y), float((y == p).mean()) if len(y) else 0.0, float(f1))


def evaluate(
    probabilities: Probabilities, docs: Sequence[EntityDoc], method: Method
) -> dict[str, Scores]:
    """The method's scores on all of ``docs``' entities and on the mixed documents'."""
    predicted = method(probabilities, docs)
    rows = [
        (e.label, label, doc.mixed)
        for doc, labels in zip(docs, predicted, strict=True)
        for e, label in zip(doc.entities, labels, strict=True)
    ]
    mixed = [(t, p) for t, p, m in rows if m]
    return {
        "all": scores([t for t, _, _ in rows], [p for _, p, _ in rows]),
        "mixed": scores([t for t, _ in mixed], [p for _, p in mixed]),
    }


def cached(probabilities: Probabilities) -> Probabilities:
    """``probabilities`` that runs each distinct text once across methods."""
    seen: dict[str, np.ndarray] = {}

    def run(texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in seen))
        if todo:
            seen.update(zip(todo, probabilities(todo), strict=True))
        return np.array([seen[t] for t in texts]).reshape(len(texts), 3)

    return run


__all__ = [
    "BASELINE",
    "CHOSEN",
    "METHODS",
    "EntityDoc",
    "Scores",
    "by_clause",
    "cached",
    "evaluate",
    "load_finentity",
    "whole_text",
]
