from __future__ import annotations

import pytest

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.baselines import FrozenEncoderBaseline, lexicon_sentiment, vader_sentiment
from finsent.model.data import Example
from finsent.model.topics import TOPICS

NEG, NEU, POS = (SENTIMENTS.index(s) for s in ("negative", "neutral", "positive"))
EARN, FED, OIL = (TOPICS.index(t) for t in ("Earnings", "Fed | Central Banks", "Energy | Oil"))

NEGATIVE_TEXT = "The company reported a loss and warned of bankruptcy"
NEUTRAL_TEXT = "The annual shareholder meeting will be held in Chicago on Tuesday"


def test_lexicon_sentiment_on_unambiguous_sentences() -> None:
    texts = [
        NEGATIVE_TEXT,
        NEUTRAL_TEXT,
        "Record profit as the company achieved strong gains and improved margins",
    ]
    assert lexicon_sentiment(texts) == [NEG, NEU, POS]


def test_vader_sentiment_on_unambiguous_sentences() -> None:
    texts = [NEGATIVE_TEXT, NEUTRAL_TEXT, "Profit rose and the outlook improved strongly"]
    assert vader_sentiment(texts) == [NEG, NEU, POS]


@pytest.mark.parametrize("fn", [lexicon_sentiment, vader_sentiment])
def test_lexicon_baselines_keep_length_and_range(fn) -> None:
    texts = ["", "Shares fell", "Shares rose", NEGATIVE_TEXT, NEUTRAL_TEXT, "???"]
    out = fn(texts)
    assert len(out) == len(texts)
    assert all(isinstance(i, int) and 0 <= i < len(SENTIMENTS) for i in out)
    assert fn([]) == []


def test_empty_text_is_neutral() -> None:
    assert lexicon_sentiment([""]) == [NEU]
    assert vader_sentiment([""]) == [NEU]


# Hand-written headlines: each sentiment spread over the same three topics so that the
# sentiment classifier cannot lean on topic, and vice versa.
TRAIN: list[tuple[str, int, int]] = [
    ("Quarterly earnings beat estimates and profit surged to a record", POS, EARN),
    ("Revenue jumped and the company raised its full-year guidance", POS, EARN),
    ("Strong quarterly results sent profit sharply higher", POS, EARN),
    ("Earnings soared as margins improved across every division", POS, EARN),
    ("Stocks rallied after the central bank signalled welcome rate cuts", POS, FED),
    ("Markets cheered as the Fed's easing boosted growth hopes", POS, FED),
    ("Central bank support lifted investor confidence strongly", POS, FED),
    ("Oil producer posts big gains as crude prices climb and output grows", POS, OIL),
    ("Energy shares surged as oil demand recovered strongly", POS, OIL),
    ("Refiner's profit soared on booming gasoline demand", POS, OIL),
    ("Quarterly profit collapsed and the company swung to a heavy loss", NEG, EARN),
    ("Earnings missed badly and revenue plunged as sales slumped", NEG, EARN),
    ("The firm cut its guidance after a disastrous quarter of losses", NEG, EARN),
    ("Weak results triggered layoffs and fears of bankruptcy", NEG, EARN),
    ("Stocks crashed after the Fed's surprise rate hike stoked recession fears", NEG, FED),
    ("Central bank warns of severe downturn as inflation worsens", NEG, FED),
    ("Markets tumbled as the central bank's aggressive tightening hurt lenders", NEG, FED),
    ("Oil prices crashed and energy firms reported huge losses", NEG, OIL),
    ("Pipeline explosion halts output and drives driller to default", NEG, OIL),
    ("Energy stocks plunged as the crude glut deepened losses", NEG, OIL),
    ("The company will report quarterly earnings on Thursday", NEU, EARN),
    ("Earnings release scheduled for after the market close", NEU, EARN),
    ("The firm publishes its second-quarter results next week", NEU, EARN),
    ("Quarterly report to be filed with regulators in May", NEU, EARN),
    ("The Federal Reserve meets on Wednesday to discuss interest rates", NEU, FED),
    ("Central bank minutes will be published at 2 pm", NEU, FED),
    ("The ECB governing council holds its regular policy meeting", NEU, FED),
    ("OPEC ministers meet in Vienna on Monday", NEU, OIL),
    ("The oil company will hold an investor call next month", NEU, OIL),
    ("Weekly crude inventory data is due on Wednesday", NEU, OIL),
]
HELD_OUT_SENTIMENT: list[tuple[str, int]] = [
    ("Profit soared and the company raised its outlook", POS),
    ("Shares collapsed after a huge loss and bankruptcy warning", NEG),
    ("The company will announce results on Tuesday", NEU),
    ("Energy stocks rallied strongly as oil prices surged", POS),
    ("Stocks crashed as fears of recession worsened", NEG),
]
HELD_OUT_TOPIC: list[tuple[str, int]] = [
    ("Third-quarter earnings per share came in above forecasts", EARN),
    ("The Federal Reserve left interest rates unchanged", FED),
    ("Brent crude rose as OPEC cut production", OIL),
    ("The central bank governor spoke about monetary policy", FED),
    ("Revenue and profit figures for the quarter were released", EARN),
]


@pytest.fixture(scope="module")
def fitted() -> FrozenEncoderBaseline:
    examples = [Example(text, s, t, "hand") for text, s, t in TRAIN]
    # Single-label examples, as real sources have: one only for sentiment, one only for topic.
    examples += [
        Example("Gold prices rose to a record high", POS, None, "hand"),
        Example("Crude oil futures are traded on NYMEX", None, OIL, "hand"),
    ]
    return FrozenEncoderBaseline().fit(examples)


@pytest.mark.slow
@pytest.mark.weights
def test_frozen_encoder_predicts_held_out_sentiment(fitted: FrozenEncoderBaseline) -> None:
    texts, labels = zip(*HELD_OUT_SENTIMENT, strict=True)
    predicted = fitted.predict_sentiment(list(texts))
    assert all(isinstance(i, int) and 0 <= i < len(SENTIMENTS) for i in predicted)
    assert sum(p == y for p, y in zip(predicted, labels, strict=True)) >= 4, predicted


@pytest.mark.slow
@pytest.mark.weights
def test_frozen_encoder_predicts_held_out_topic(fitted: FrozenEncoderBaseline) -> None:
    texts, labels = zip(*HELD_OUT_TOPIC, strict=True)
    predicted = fitted.predict_topic(list(texts))
    assert sum(p == y for p, y in zip(predicted, labels, strict=True)) >= 4, predicted


@pytest.mark.slow
@pytest.mark.weights
def test_frozen_encoder_caches_embeddings(fitted: FrozenEncoderBaseline) -> None:
    train_texts = [text for text, _, _ in TRAIN]
    before = fitted.embedded_count
    # Training texts were embedded by fit; predicting on them embeds nothing new.
    fitted.predict_sentiment(train_texts)
    assert fitted.embedded_count == before

    new = ["A sentence the baseline has never seen", "Another unseen one"]
    fitted.predict_sentiment(new + new)  # duplicates inside one call are embedded once
    assert fitted.embedded_count == before + 2
    size = fitted.cache_size
    fitted.predict_topic(new)
    assert fitted.embedded_count == before + 2
    assert fitted.cache_size == size


@pytest.mark.slow
@pytest.mark.weights
def test_frozen_encoder_embeddings_keep_input_order(fitted: FrozenEncoderBaseline) -> None:
    import numpy as np

    short, long = "Oil rose", "The central bank published the minutes of its policy meeting"
    fresh = FrozenEncoderBaseline(fitted.encoder_dir)
    both = fresh.embed([long, short])  # long first: sorting by length must not reorder output
    np.testing.assert_allclose(both[0], fitted.embed([long])[0], atol=1e-5)
    np.testing.assert_allclose(both[1], fitted.embed([short])[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.weights
def test_frozen_encoder_skips_topic_with_one_class(fitted: FrozenEncoderBaseline) -> None:
    baseline = FrozenEncoderBaseline(fitted.encoder_dir)
    examples = [Example(text, s, EARN, "hand") for text, s, _ in TRAIN[::3]]
    examples.append(Example("Oil rose", None, None, "hand"))  # no labels: not even embedded
    baseline.fit(examples)
    assert not baseline.has_topic_classifier
    assert baseline.cache_size == len(TRAIN[::3])
    with pytest.raises(RuntimeError, match="topic"):
        baseline.predict_topic(["anything"])
    assert len(baseline.predict_sentiment(["anything"])) == 1


def test_frozen_encoder_needs_fit_before_predict(tmp_path) -> None:
    baseline = FrozenEncoderBaseline(tmp_path)  # nothing is loaded until a text is embedded
    with pytest.raises(RuntimeError, match="fit"):
        baseline.predict_sentiment(["anything"])
    with pytest.raises(RuntimeError):
        baseline.predict_topic(["anything"])
    with pytest.raises(ValueError, match="2 sentiment classes"):
        baseline.fit([Example("Shares rose", POS, None, "hand")])
