"""Inference backends on a tiny random network with the real tokenizer's vocabulary."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.infer import OnnxPredictor, TorchPredictor, export_onnx, load_tokenizer
from model.network import FinsentNetwork, NetworkConfig

TEXTS = [
    "Acme Corp shares plunge after profit warning",
    "Fed holds rates steady",
    "Northwind Bank reports record quarterly earnings, beating analyst estimates by a wide margin",
    "Oil rises",
    "Regulators open an investigation into the merger of two regional lenders in the Midwest",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def network(tokenizer) -> FinsentNetwork:
    torch.manual_seed(0)
    config = replace(NetworkConfig.tiny(), vocab_size=len(tokenizer), max_positions=128)
    return FinsentNetwork(config).eval()


def test_bucketing_and_padding_keep_each_result(network, tokenizer) -> None:
    """Batched, length-bucketed predictions equal one-at-a-time predictions, in input order."""
    batched = TorchPredictor(network, tokenizer, max_length=64, batch_size=2).predict(TEXTS)
    alone = [TorchPredictor(network, tokenizer, max_length=64).predict([t]) for t in TEXTS]
    for i, single in enumerate(alone):
        np.testing.assert_allclose(batched.sentiment_probs[i], single.sentiment_probs[0], atol=1e-5)
        np.testing.assert_allclose(batched.topic_probs[i], single.topic_probs[0], atol=1e-5)
        assert batched.top_tokens[i] == single.top_tokens[0]
    np.testing.assert_allclose(batched.sentiment_probs.sum(1), 1.0, atol=1e-5)
    assert batched.topic_probs.shape == (len(TEXTS), 20)
    assert np.all(np.abs(batched.score) <= 1.0)


def test_top_words_merge_pieces_and_skip_specials(network, tokenizer) -> None:
    predictor = TorchPredictor(network, tokenizer, max_length=64)
    ids = tokenizer("Northwind's writedown of the year, again!")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert any(t.startswith("##") for t in tokens)  # the text really has word pieces
    # All weight on the second piece of "writedown": the whole word gets it.
    alpha = np.zeros(len(ids))
    first_piece = next(i for i, t in enumerate(tokens) if t == "write")
    alpha[first_piece + 1] = 0.6
    alpha[tokens.index("again")] = 0.3
    alpha[0] = 0.05  # [CLS]
    alpha[tokens.index("the")] = 0.05  # a function word, however much attention it gets
    top = predictor.top_words(ids, alpha, k=3)
    assert top[:2] == ("writedown", "again")
    assert not {"[CLS]", "!", ",", "the", "of"} & set(top)


def test_truncation_at_max_length(network, tokenizer) -> None:
    long = " ".join(["profit"] * 300)
    predictions = TorchPredictor(network, tokenizer, max_length=16).predict([long, "short"])
    assert predictions.sentiment_probs.shape == (2, 3)


def test_int8_backends_agree_with_fp32(network, tokenizer, tmp_path) -> None:
    fp32 = TorchPredictor(network, tokenizer, max_length=64).predict(TEXTS)
    int8 = TorchPredictor(network, tokenizer, max_length=64, quantize=True).predict(TEXTS)
    onnx_path = export_onnx(network, tmp_path, keep_fp32=True)
    assert onnx_path.name == "model-int8.onnx" and not list(tmp_path.glob("*.partial"))
    # The exported graph itself is exact, padding included: fp32 ONNX equals torch.
    exact = OnnxPredictor(tmp_path / "model-fp32.onnx", tokenizer, 64, threads=1, batch_size=8)
    padded = exact.predict(TEXTS)
    np.testing.assert_allclose(padded.sentiment_probs, fp32.sentiment_probs, atol=1e-5)
    np.testing.assert_allclose(padded.topic_probs, fp32.topic_probs, atol=1e-5)
    assert padded.top_tokens == fp32.top_tokens
    onnx = OnnxPredictor(onnx_path, tokenizer, max_length=64, threads=1).predict(TEXTS)
    for other in (int8, onnx):
        np.testing.assert_allclose(other.sentiment_probs, fp32.sentiment_probs, atol=0.02)
        np.testing.assert_allclose(other.topic_probs, fp32.topic_probs, atol=0.02)
    assert onnx.sentiment_probs.shape == (len(TEXTS), 3)


def test_batch_invariant_scores_do_not_depend_on_batch_mates(network, tokenizer, tmp_path) -> None:
    """A story's int8 scores are a function of its own text: the same alone, in any batch,
    in any order, on any number of workers (what makes a replay match a live run)."""
    onnx_path = export_onnx(network, tmp_path)
    pooled = OnnxPredictor(onnx_path, tokenizer, 64, threads=2, batch_invariant=True)
    serial = OnnxPredictor(onnx_path, tokenizer, 64, threads=1, batch_invariant=True)
    together = pooled.predict(TEXTS)
    for i, text in enumerate(TEXTS):
        alone = serial.predict([text])
        assert np.array_equal(together.sentiment_probs[i], alone.sentiment_probs[0])
        assert np.array_equal(together.topic_probs[i], alone.topic_probs[0])
        assert together.top_tokens[i] == alone.top_tokens[0]
    reordered = pooled.predict(TEXTS[::-1] + TEXTS[:2])
    assert np.array_equal(reordered.sentiment_probs[: len(TEXTS)], together.sentiment_probs[::-1])
    torch_invariant = TorchPredictor(network, tokenizer, 64, batch_invariant=True)
    np.testing.assert_allclose(
        torch_invariant.predict(TEXTS).sentiment_probs, together.sentiment_probs, atol=0.02
    )
