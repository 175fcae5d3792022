"""The scoring graph's rewrites, on small graphs: per-row activation quantization computes what
its definition says, and its rows (like the portable softmax's) do not depend on the batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from finsent.model.onnx_rewrites import (
    per_row_activations,
    portable_softmax,
    rows_are_independent,
    token_sums_as_reductions,
)

K, N = 48, 24


def _matmul_model(path: Path, weights: np.ndarray) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", weights.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", weights.shape[1]])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "g",
        [x],
        [y],
        [numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _quantized(tmp_path: Path, weight_type: str = "QInt8") -> onnx.ModelProto:
    """What export_onnx's quantize_dynamic gives for one MatMul with constant weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = np.random.default_rng(1).normal(size=(K, N)).astype(np.float32)
    out = tmp_path / f"int8-{weight_type}.onnx"
    quantize_dynamic(
        str(_matmul_model(tmp_path / "fp32.onnx", weights)),
        str(out),
        weight_type=getattr(QuantType, weight_type),
        per_channel=True,
        reduce_range=True,
    )
    return onnx.load(str(out))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory) -> onnx.ModelProto:
    model = _quantized(tmp_path_factory.mktemp("per_row"))
    assert per_row_activations(model) == 1
    onnx.checker.check_model(model)
    return model


def test_per_row_quantization_is_its_definition(rewritten) -> None:
    """Each row: scale max|x| / 127, values rounded to uint8 around 128, exact integer
    products of (q − 128) and the int8 weights, times the weights' and the row's scales."""
    weights = {i.name: numpy_helper.to_array(i) for i in rewritten.graph.initializer}
    matrix = next(v for k, v in weights.items() if v.dtype == np.int8 and v.shape == (K, N))
    matrix_scale = next(v for k, v in weights.items() if v.shape == (N,) and "scale" in k)
    rng = np.random.default_rng(2)
    # Rows of very different ranges, one all positive, one all zero.
    x = rng.normal(size=(5, K)).astype(np.float32) * np.array([[0.01], [1], [100], [1], [0]])
    x[3] = np.abs(x[3]) + 0.5
    x = x.astype(np.float32)
    got = _session(rewritten).run(None, {"x": x})[0]
    scale = np.maximum(np.abs(x).max(1, keepdims=True) / np.float32(127), np.finfo(np.float32).tiny)
    q = np.clip(np.round(x / scale) + 128, 0, 255)
    want = ((q - 128) @ matrix.astype(np.float64)) * matrix_scale * scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert not got[4].any()  # an all-zero row stays exactly zero


def test_a_small_row_keeps_its_precision_beside_a_large_one(rewritten, tmp_path) -> None:
    """Why per row: with one scale per tensor, a row 1,000× smaller than its neighbour is
    quantized to a few levels; with its own scale it keeps int8's precision."""
    per_tensor = _session(_quantized(tmp_path))
    weights = np.random.default_rng(1).normal(size=(K, N)).astype(np.float32)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, K)).astype(np.float32) * np.array([[1000.0], [1.0]], np.float32)
    exact = x[1] @ weights

    def error(session: ort.InferenceSession) -> float:
        return float(np.abs(session.run(None, {"x": x})[0][1] - exact).max() / np.abs(exact).max())

    assert error(_session(rewritten)) < 0.05 < error(per_tensor)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 9),
    spread=st.floats(0.001, 1000.0),
    seed=st.integers(0, 2**16),
)
def test_each_row_gets_the_same_bits_in_any_batch(rewritten, rows, spread, seed) -> None:
    session = _session(rewritten)
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0, spread, size=(rows, 1))
    x = (rng.normal(size=(rows, K)) * scales).astype(np.float32)
    batch = session.run(None, {"x": x})[0]
    for i in range(rows):
        alone = session.run(None, {"x": x[i : i + 1]})[0][0]
        assert np.array_equal(batch[i], alone)
    reversed_batch = session.run(None, {"x": x[::-1].copy()})[0]
    assert np.array_equal(reversed_batch, batch[::-1])


def test_the_graph_says_its_rows_are_independent(rewritten, tmp_path) -> None:
    metadata = {p.key: p.value for p in rewritten.metadata_props}
    assert rows_are_independent(metadata)
    assert not rows_are_independent({p.key: p.value for p in _quantized(tmp_path).metadata_props})
    assert rows_are_independent(_session(rewritten).get_modelmeta().custom_metadata_map)


def test_asymmetric_weights_are_refused(tmp_path) -> None:
    """The zero-point correction assumes symmetric weights; anything else is an error, not a
    silently wrong graph."""
    with pytest.raises(ValueError, match="zero points"):
        per_row_activations(_quantized(tmp_path, "QUInt8"))


def _one_node_model(node: onnx.NodeProto, inputs: dict, output: list) -> onnx.ModelProto:
    """`inputs`: name → shape; the output is "y" of shape `output`."""
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _softmax_model(row_width: int) -> onnx.ModelProto:
    softmax = helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="softmax")
    model = _one_node_model(softmax, {"x": ["a", "b", "n"]}, ["a", "b", "n"])
    assert portable_softmax(model, row_width=row_width) == 1
    onnx.checker.check_model(model)
    return model


# Token counts up to the row width of 64, as the tokenizer's max length keeps them.
LENGTHS, PADDINGS, SEEDS = st.integers(1, 40), st.integers(0, 24), st.integers(0, 2**16)


@settings(max_examples=40, deadline=None)
@given(length=LENGTHS, padding=PADDINGS, rows=st.integers(1, 4), seed=SEEDS)
def test_portable_softmax_ignores_masked_padding(length, padding, rows, seed) -> None:
    """A row padded with masked positions (the attention mask's most negative float) gives
    the same bits as the row alone, while the padded width stays within `row_width`."""
    session = _session(_softmax_model(row_width=64))
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=4, size=(rows, 3, length)).astype(np.float32)
    masked = np.full((rows, 3, padding), np.finfo(np.float32).min, np.float32)
    alone = session.run(None, {"x": x})[0]
    padded = session.run(None, {"x": np.concatenate([x, masked], axis=-1)})[0]
    assert np.array_equal(padded[..., :length], alone)
    assert not padded[..., length:].any()
    want = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(alone, want / want.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_portable_softmax_is_still_a_softmax_past_its_row_width() -> None:
    session = _session(_softmax_model(row_width=8))
    x = np.random.default_rng(4).normal(size=(2, 2, 30)).astype(np.float32)
    want = np.exp(x - x.max(-1, keepdims=True))
    got = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def _pooling_model() -> onnx.ModelProto:
    node = helper.make_node("Einsum", ["alpha", "x"], ["y"], equation="bt,bth->bh", name="pool")
    model = _one_node_model(node, {"alpha": ["b", "t"], "x": ["b", "t", 8]}, ["b", 8])
    assert token_sums_as_reductions(model) == 1
    onnx.checker.check_model(model)
    return model


@settings(max_examples=40, deadline=None)
@given(length=LENGTHS, padding=PADDINGS, texts=st.integers(1, 5), seed=SEEDS)
def test_pooling_ignores_padded_tokens(length, padding, texts, seed) -> None:
    """Σ α_t·x_t, with padded tokens (α exactly 0, any vector) appended: the same bits."""
    session = _session(_pooling_model())
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(length), size=texts).astype(np.float32)
    x = rng.normal(size=(texts, length, 8)).astype(np.float32)
    alone = session.run(None, {"alpha": alpha, "x": x})[0]
    padded_alpha = np.concatenate([alpha, np.zeros((texts, padding), np.float32)], axis=1)
    padded_x = np.concatenate([x, rng.normal(size=(texts, padding, 8)).astype(np.float32)], 1)
    padded = session.run(None, {"alpha": padded_alpha, "x": padded_x})[0]
    assert np.array_equal(padded, alone)
    for i in range(texts):  # and each text on its own
        single = session.run(None, {"alpha": alpha[i : i + 1], "x": x[i : i + 1]})[0]
        assert np.array_equal(single[0], alone[i])
    np.testing.assert_allclose(alone, np.einsum("bt,bth->bh", alpha, x), rtol=1e-5, atol=1e-6)
