"""The shipped artifact: small enough, loads offline, and gets unambiguous headlines right."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from finsent.core.records import NewsItem
from finsent.model.artifact import SHIPPED_ARTIFACT, read_artifact
from finsent.model.infer import AttentionScorer
from finsent.model.scorer import load_scorer

pytestmark = pytest.mark.weights

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
SENTIMENT = [
    ("Northwind Bank shares plunge as losses mount and depositors flee", "negative"),
    ("Acme Corp files for bankruptcy after failing to repay its lenders", "negative"),
    ("Acme Corp posts record profit and raises its annual outlook", "positive"),
    ("Harbor Trust beats earnings estimates as revenue jumps 20%", "positive"),
    ("Acme Corp to hold its annual general meeting on May 5", "neutral"),
]
TOPIC = [
    (
        "Fed raises interest rates by a quarter point, signals more hikes ahead",
        "Fed | Central Banks",
    ),
    ("Oil prices climb as OPEC agrees to cut output", "Energy | Oil"),
    ("Acme Corp agrees to buy rival Globex for $4 billion in cash", "M&A | Investments"),
]


def news(i: int, title: str) -> NewsItem:
    return NewsItem(id=f"n{i}", source="wire", title=title, published_at=T0, fetched_at=T0)


def test_artifact_is_compact_and_documented() -> None:
    size = sum(f.stat().st_size for f in SHIPPED_ARTIFACT.iterdir())
    assert size <= 25 * 1024 * 1024, f"{size / 2**20:.1f} MB"
    card = (SHIPPED_ARTIFACT / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Test results" in card and "phrasebank-50agree" in card
    artifact = read_artifact()
    assert artifact.meta["training"]["data_sha256"]  # which data it was trained on
    assert artifact.sentiments == ["negative", "neutral", "positive"]
    assert len(artifact.topics) == 20


@pytest.fixture(scope="module", params=["torch-fp32", "onnx-int8"])
def scorer(request, tmp_path_factory) -> AttentionScorer:
    return AttentionScorer(backend=request.param)


def test_unambiguous_headlines(scorer: AttentionScorer) -> None:
    items = [news(i, title) for i, (title, _) in enumerate(SENTIMENT + TOPIC)]
    scored = scorer.score(items)
    assert [s.item.id for s in scored] == [i.id for i in items]
    assert [s.sentiment for s in scored[: len(SENTIMENT)]] == [want for _, want in SENTIMENT]
    assert [s.topic for s in scored[len(SENTIMENT) :]] == [want for _, want in TOPIC]
    for record in scored:
        assert record.model_version == scorer.version
        assert record.top_tokens
        expected_sign = {"negative": -1, "positive": 1}.get(record.sentiment)
        if expected_sign:
            assert record.score * expected_sign > 0


def test_load_scorer_defaults_to_the_model() -> None:
    from finsent.core.settings import Settings

    assert Settings().scorer == "attention"
    scorer = load_scorer("lexicon")
    assert scorer.version == "lexicon-lm-1"
    with pytest.raises(ValueError, match="unknown scorer"):
        load_scorer("nope")


def test_int8_scoring_matches_fp32_where_a_user_would_look() -> None:
    """The shipped int8 graph against the fp32 network, on a fixed labelled set: the same
    accuracy within half a point, and the same label on nearly every headline.

    Measured on the PhraseBank 50Agree test split (n=970): int8 accuracy 0.8536 against fp32
    0.8515 with 98.6 % of labels the same, on AVX-512 VNNI and on AVX2 alike (the weights are
    7-bit, so the integer kernels of both give the same sums). Per-headline probabilities may
    move by up to 0.4 near a decision boundary, so they are not compared one by one.
    """
    from finsent.model.data import DataError, standard_corpus
    from finsent.model.infer import BackboneText, OnnxPredictor, make_predictor

    try:
        corpus = standard_corpus()
    except DataError as exc:
        pytest.skip(f"shared datasets absent: {exc}")
    rows = corpus.tests["phrasebank-50agree"]
    texts, labels = [r.text for r in rows], np.array([r.sentiment for r in rows])
    artifact = read_artifact()
    fp32 = make_predictor(artifact, "torch-fp32").predict(texts, explain=False).sentiment
    int8 = make_predictor(artifact, "onnx-int8", batch_invariant=True)
    assert isinstance(int8, OnnxPredictor) and isinstance(int8.text, BackboneText)
    quantized = int8.predict(texts, explain=False).sentiment
    fp32_accuracy, int8_accuracy = (fp32 == labels).mean(), (quantized == labels).mean()
    assert abs(int8_accuracy - fp32_accuracy) <= 0.005, (int8_accuracy, fp32_accuracy)
    assert (quantized == fp32).mean() >= 0.975


def test_scoring_needs_no_torch() -> None:
    """The scorer runs the shipped graph with torch and transformers made unimportable."""
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'sentence_transformers'):\n"
        "    sys.modules[name] = None  # an import of any of them now fails\n"
        "from datetime import UTC, datetime\n"
        "from finsent.core.records import NewsItem\n"
        "from finsent.model.scorer import load_scorer\n"
        "t = datetime(2026, 3, 2, tzinfo=UTC)\n"
        "items = [NewsItem(id='a', source='s', title='Acme Corp files for bankruptcy',\n"
        "                  published_at=t, fetched_at=t)]\n"
        "scored = load_scorer('attention').score(items)\n"
        "print(scored[0].sentiment, scored[0].model_version)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sentiment, version = result.stdout.split()
    assert sentiment == "negative" and version.endswith("/onnx-int8")
