from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATASETS

from finsent.model.data import DataError
from finsent.model.entity_eval import (
    BASELINE,
    CHOSEN,
    FINENTITY,
    METHODS,
    cached,
    document_key,
    evaluate,
    load_finentity,
)

TEXT = "Nvidia <NVDA.O> surges as Intel sinks [nL4N2Z028U]"
ROWS = [
    (0, TEXT, "Nvidia", 0, 6, 2),
    (0, TEXT, "Intel", TEXT.index("Intel"), TEXT.index("Intel") + 5, 0),
    (1, "Analysts at UBS say Tesla jumps", "UBS", 12, 15, 1),
    (1, "Analysts at UBS say Tesla jumps", "Tesla", 20, 25, 2),
]


def write_finentity(root: Path) -> None:
    path = root / FINENTITY
    path.parent.mkdir(parents=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["doc_id", "text", "entity", "start", "end", "label"])
        writer.writerows(ROWS)


def cue_model(texts: Sequence[str]) -> np.ndarray:
    """A fake model: 'surges'/'jumps' positive, 'sinks' negative (the first cue), else neutral."""
    out = []
    for text in texts:
        cues = [w for w in text.split() if w in {"surges", "jumps", "sinks"}]
        first = cues[0] if cues else None
        out.append(
            [0.9, 0.05, 0.05]
            if first == "sinks"
            else [0.05, 0.05, 0.9]
            if first
            else [0.1, 0.8, 0.1]
        )
    return np.array(out).reshape(len(texts), 3)


def test_load_blanks_wire_codes_and_keeps_offsets(tmp_path: Path) -> None:
    write_finentity(tmp_path)
    first, second = load_finentity(tmp_path)
    assert first.text == TEXT.replace("<NVDA.O>", " " * 8).replace("[nL4N2Z028U]", " " * 12)
    assert [first.text[e.start : e.end] for e in first.entities] == ["Nvidia", "Intel"]
    assert first.key == document_key(TEXT) and len(first.key) == 16
    assert first.mixed and second.mixed
    assert first.held_out == (int(first.key, 16) % 2 == 1)


def test_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="finentity_entity_level.csv"):
        load_finentity(tmp_path)


def test_clauses_and_the_source_rule_beat_the_whole_text_on_a_toy_set(tmp_path: Path) -> None:
    write_finentity(tmp_path)
    docs = load_finentity(tmp_path)
    results = {name: evaluate(cue_model, docs, method) for name, method in METHODS.items()}
    # whole text: Nvidia right, Intel wrong (positive); UBS wrong, Tesla right
    assert results[BASELINE]["all"].accuracy == 0.5
    assert results["clauses"]["all"].accuracy == 0.75  # only UBS, a source, is wrong
    assert results[CHOSEN]["all"].accuracy == 1.0
    assert results[CHOSEN]["mixed"].n == 4
    assert results[CHOSEN]["all"].macro_f1 == 1.0


def test_cached_runs_each_text_once() -> None:
    seen: list[str] = []

    def model(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return cue_model(texts)

    run = cached(model)
    first = run(["a surges", "b sinks", "a surges"])
    second = run(["b sinks", "c"])
    assert seen == ["a surges", "b sinks", "c"]
    assert np.array_equal(first[1], second[0]) and first.shape == (3, 3)


# -- the shipped model on FinEntity -----------------------------------------------------------

# Measured on the held-out half (467 documents, 1,045 entities; 180 entities in 60 mixed
# documents), onnx-int8, bench/bench_entity_sentiment.py: chosen minus baseline.
MEASURED_GAIN = {("all", "accuracy"): 0.063, ("all", "macro_f1"): 0.057}
MEASURED_GAIN |= {("mixed", "accuracy"): 0.150, ("mixed", "macro_f1"): 0.181}
TOLERANCE = 0.02  # int8 scores move a little across CPUs; a clause's label rarely does


@pytest.mark.weights
def test_per_company_sentiment_beats_the_headline_on_held_out_finentity() -> None:
    from finsent.model.artifact import read_artifact
    from finsent.model.entity_sentiment import predictor_probabilities
    from finsent.model.infer import make_predictor

    try:
        docs = load_finentity(SHARED_DATASETS)
    except DataError as exc:
        pytest.skip(f"shared datasets absent: {exc}")
    held_out = [doc for doc in docs if doc.held_out]
    predictor = make_predictor(read_artifact(), threads=1, batch_invariant=True)
    probabilities = cached(predictor_probabilities(predictor))
    baseline = evaluate(probabilities, held_out, METHODS[BASELINE])
    chosen = evaluate(probabilities, held_out, METHODS[CHOSEN])
    for (subset, metric), gain in MEASURED_GAIN.items():
        got = getattr(chosen[subset], metric) - getattr(baseline[subset], metric)
        assert got >= gain - TOLERANCE, (subset, metric, got)
