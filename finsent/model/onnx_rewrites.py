"""Rewrites of the exported int8 scoring graph that make its outputs a function of each text alone.

Two properties are wanted together (model/infer.py, batch invariance and CPU independence):
- the same text gives the same float32 bits on AVX-512 and AVX2-only CPUs;
- the same text gives the same bits alone, padded, or in any batch, so batches can run.

`portable_softmax` serves the first: ONNX Runtime's Softmax kernel rounds differently per CPU.
It and `token_sums_as_reductions` (the attention pooling's Σ α_t·x_t) serve the second: their
sums over tokens run along the last axis of rows zero-padded to one fixed width, since the
order of additions of ReduceSum, Einsum and MatMul follows the padded length, and, over a
middle axis, the batch size.

`per_row_activations` serves the second: ONNX Runtime's dynamic quantization picks one
activation scale per tensor, so a text's int8 values depend on every other row of its batch.
Here each token row gets its own scale; the integer products stay exact.

Predictors run these graphs at ONNX Runtime's basic optimization level: its extended fusions
(SkipLayerNormalization, BiasGelu, FusedMatMul) also sum in orders that follow the padding.

These need onnx and numpy only; `torch_infer.export_onnx` applies them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

# Written into the graph's metadata, so a predictor can tell a graph whose rows are
# independent (and so can be batched without losing batch invariance) from an older one.
ACTIVATIONS_KEY = "finsent.activations"
PER_ROW = "per-row"


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _reduce(op: str, x: str, y: str, axes: str, axis: int, opset: int):
    """ReduceMax/ReduceMin over `axis`, keepdims (axes an input from opset 18, an attribute
    before)."""
    from onnx import helper

    if opset >= 18:
        return helper.make_node(op, [x, axes], [y], name=f"{y}/{op}", keepdims=1)
    return helper.make_node(op, [x], [y], name=f"{y}/{op}", axes=[axis], keepdims=1)


def _node(op: str, inputs: list[str], output: str, **attributes):
    """One node, named after its output (output names are unique, so node names are too)."""
    from onnx import helper

    return helper.make_node(op, inputs, [output], name=f"{output}/{op}", **attributes)


def _fixed_width_constants(graph: onnx.GraphProto, width: int) -> dict[str, str]:
    """The int64 constants `_zero_padded_rows` uses, added to `graph` once."""
    from onnx import numpy_helper

    values = {"zero": 0, "one": 1, "two": 2, "last_axis": -1, "width": width}
    names = {key: f"fixed_width/{key}" + (f"_{width}" if key == "width" else "") for key in values}
    present = {init.name for init in graph.initializer}
    graph.initializer.extend(
        numpy_helper.from_array(np.array([values[key]], np.int64), name)
        for key, name in names.items()
        if name not in present
    )
    return names


def _zero_padded_rows(x: str, out: str, constants: dict[str, str]) -> list:
    """Nodes that append zeros to the last axis of `x` up to the constants' width (none to a
    row already as long), so a sum along it sees the same values however `x` was padded."""
    from onnx import TensorProto, helper

    zero, one, two, width = (constants[k] for k in ("zero", "one", "two", "width"))
    no_pad = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    return [
        _node("Shape", [x], f"{out}/row_length", start=-1),
        _node("Sub", [width, f"{out}/row_length"], f"{out}/missing"),
        _node("Max", [f"{out}/missing", zero], f"{out}/append"),
        # Pads: zeros at every begin and end but the last axis's end.
        _node("Shape", [x], f"{out}/shape"),
        _node("Size", [f"{out}/shape"], f"{out}/rank"),
        _node("Mul", [f"{out}/rank", two], f"{out}/pad_count"),
        _node("Sub", [f"{out}/pad_count", one], f"{out}/other_pad_count"),
        _node("Reshape", [f"{out}/other_pad_count", one], f"{out}/other_pads_shape"),
        _node("ConstantOfShape", [f"{out}/other_pads_shape"], f"{out}/other_pads", value=no_pad),
        _node("Concat", [f"{out}/other_pads", f"{out}/append"], f"{out}/pads", axis=0),
        _node("Pad", [x, f"{out}/pads"], out),
    ]


def portable_softmax(model: onnx.ModelProto, row_width: int = 64) -> int:
    """Rewrite every Softmax of `model` as ReduceMax, Sub, Exp, ReduceSum and Div; returns how
    many. Rows up to `row_width` long (the tokenizer's max length) are summed alike however far
    they are padded.

    ONNX Runtime picks its Softmax kernel by the CPU at run time (AVX-512 or AVX2), and the two
    differ in the last bit of some probabilities. Dynamic int8 quantization downstream turns
    such a bit, now and then, into another rounded activation, and the same text's score then
    differs between the two CPUs by up to 0.17. With plain operators every node of the graph
    gave the same bits on both (bench/bench_cpu_determinism.py compares this CPU with
    `qemu-x86_64 -cpu Haswell`).
    """
    opset = _opset(model)
    if opset < 15:  # older Softmax flattens to 2-D first; Shape takes `start` from 15
        raise ValueError(f"portable_softmax needs opset 15 or later, not {opset}")
    graph = model.graph
    constants = _fixed_width_constants(graph, row_width)
    last_axis = constants["last_axis"]
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if axis != -1:  # the row sum below is over the last axis
            raise ValueError(f"portable_softmax handles softmax over the last axis, not {axis}")
        x, y = node.input[0], node.output[0]
        name = f"{node.name or y}/portable"
        nodes += [
            _reduce("ReduceMax", x, f"{name}/max", last_axis, axis, opset),
            _node("Sub", [x, f"{name}/max"], f"{name}/shifted"),
            _node("Exp", [f"{name}/shifted"], f"{name}/exp"),
            # The row sum over `row_width` values whatever the padding: the text's own values,
            # exact zeros at masked positions, zeros appended. ReduceSum's order of additions
            # follows the row length, so the same row, padded less or more, summed otherwise.
            *_zero_padded_rows(f"{name}/exp", f"{name}/exp_row", constants),
            _node("ReduceSum", [f"{name}/exp_row", last_axis], f"{name}/sum", keepdims=1),
            _node("Div", [f"{name}/exp", f"{name}/sum"], y),
        ]
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return rewritten


def token_sums_as_reductions(model: onnx.ModelProto, row_width: int = 64) -> int:
    """Rewrite the attention pooling's Einsum ("bt,bth->bh", Σ α_t·x_t) as Mul, zero-padding of
    the token axis to `row_width` and ReduceSum; returns how many.

    ONNX Runtime's Einsum runs a matrix product per text, whose order of additions follows the
    padded length. Here the sum always runs over `row_width` token vectors: the text's own,
    exact zeros where α is 0 (padding), zeros appended; so the same bits at any padding.
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = _fixed_width_constants(graph, row_width)
    middle = "token_sums/middle_axis"
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), middle))
    nodes, rewritten = [], 0
    for node in graph.node:
        equation = next((a.s for a in node.attribute if a.name == "equation"), b"")
        if node.op_type != "Einsum" or equation.replace(b" ", b"") != b"bt,bth->bh":
            nodes.append(node)
            continue
        (weights, vectors), (pooled,) = node.input, node.output
        name = f"{node.name or pooled}/token_sum"
        # Summed along the last axis, rows of a fixed width: ReduceSum over a middle axis
        # adds in an order that follows the batch size.
        nodes += [
            _node("Transpose", [vectors], f"{name}/vectors", perm=[0, 2, 1]),  # (B, H, T)
            _node("Unsqueeze", [weights, middle], f"{name}/weights"),  # (B, 1, T)
            _node("Mul", [f"{name}/vectors", f"{name}/weights"], f"{name}/weighted"),
            *_zero_padded_rows(f"{name}/weighted", f"{name}/rows", constants),  # (B, H, W)
            _node("ReduceSum", [f"{name}/rows", constants["last_axis"]], pooled, keepdims=0),
        ]
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return rewritten


def per_row_activations(model: onnx.ModelProto) -> int:
    """Quantize each activation row (one token's vector) on its own scale; returns how many
    DynamicQuantizeLinear nodes were replaced.

    Expects `onnxruntime.quantization.quantize_dynamic`'s pattern: DynamicQuantizeLinear →
    MatMulInteger (symmetric int8 weights, zero points all 0) → Cast → Mul by the product of
    the two scales. Each row is quantized symmetrically: scale = max |x| / 127, stored as uint8
    around 128 (a per-axis QuantizeLinear over the rows), so every row shares the one zero
    point ONNX Runtime's integer kernels accept. Each product becomes one
    com.microsoft.MatMulIntegerToFloat, exact integer sums of (q − 128)·w times the weights'
    scales, and a Mul by the row scales.
    """
    from onnx import TensorProto, helper, numpy_helper

    opset = _opset(model)
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    prefix = "per_row"
    constants: dict[str, np.ndarray] = {
        f"{prefix}/levels": np.array(127.0, np.float32),
        # An all-zero row: any positive scale quantizes it to exactly 0.
        f"{prefix}/smallest_scale": np.array(np.finfo(np.float32).tiny, np.float32),
        f"{prefix}/flat": np.array([-1], np.int64),
        f"{prefix}/last_axis": np.array([-1], np.int64),
        f"{prefix}/unit_scale": np.array(1.0, np.float32),
        f"{prefix}/zero_point": np.array(128, np.uint8),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    levels, smallest, flat, last_axis, unit_scale, zero_point = constants
    zero_point_value = helper.make_tensor("zero_point", TensorProto.UINT8, [1], [128])

    row_scales: dict[str, str] = {}  # quantized tensor → its row scales, (…, 1)
    dropped: set[int] = set()
    rewired: dict[int, list] = {}  # id(node) → the nodes that replace it
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            x = node.input[0]
            quantized, scale, _ = node.output
            p = f"{quantized}/{prefix}"
            rewired[id(node)] = [
                _node("Abs", [x], f"{p}/magnitude"),
                _reduce("ReduceMax", f"{p}/magnitude", f"{p}/row_max", last_axis, -1, opset),
                _node("Div", [f"{p}/row_max", levels], f"{p}/raw_scale"),
                _node("Max", [f"{p}/raw_scale", smallest], scale),  # (…, 1)
                _node("Reshape", [scale, flat], f"{p}/scale_rows"),
                _node("Shape", [f"{p}/scale_rows"], f"{p}/rows"),
                _node(
                    "ConstantOfShape",
                    [f"{p}/rows"],
                    f"{p}/zero_point_rows",
                    value=zero_point_value,
                ),
                _node("Shape", [x], f"{p}/shape"),
                _node("Flatten", [x], f"{p}/row_matrix", axis=-1),  # (rows, features)
                _node(
                    "QuantizeLinear",
                    [f"{p}/row_matrix", f"{p}/scale_rows", f"{p}/zero_point_rows"],
                    f"{p}/quantized_rows",
                    axis=0,
                ),
                _node("Reshape", [f"{p}/quantized_rows", f"{p}/shape"], quantized),
            ]
            row_scales[quantized] = scale
        elif node.op_type == "MatMulInteger" and node.input[0] in row_scales:
            matrix = node.input[1]
            weight_zero_point = node.input[3] if len(node.input) > 3 else ""
            if weight_zero_point and numpy_helper.to_array(weights[weight_zero_point]).any():
                raise ValueError(f"{node.name}: weights with non-zero zero points")
            (cast,) = consumers[node.output[0]]
            (dequantize,) = consumers.get(cast.output[0], [None])
            if cast.op_type != "Cast" or dequantize is None or dequantize.op_type != "Mul":
                raise ValueError(f"{node.name}: expected Cast → Mul after it")
            scales = next(i for i in dequantize.input if i != cast.output[0])
            both = producers[scales]  # Mul(activation scale, weight scales)
            matrix_scale = next(i for i in both.input if i in weights)
            if len(consumers[scales]) != 1 or both.op_type != "Mul":
                raise ValueError(f"{node.name}: its scales are not one Mul of its own")
            p = f"{node.name}/{prefix}"
            rewired[id(node)] = [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [node.input[0], matrix, unit_scale, matrix_scale, zero_point],
                    [f"{p}/products"],
                    name=node.name,
                    domain="com.microsoft",
                ),
                _node("Mul", [f"{p}/products", row_scales[node.input[0]]], dequantize.output[0]),
            ]
            dropped |= {id(cast), id(dequantize), id(both)}
    nodes = []
    for node in graph.node:
        if id(node) not in dropped:
            nodes += rewired.get(id(node), [node])
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)  # the weights' zero points
    replaced = len(row_scales)
    if replaced:
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        helper.set_model_props(
            model, {**{p.key: p.value for p in model.metadata_props}, ACTIVATIONS_KEY: PER_ROW}
        )
    return replaced


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {output.name for output in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def rows_are_independent(metadata: dict[str, str]) -> bool:
    """Whether a graph's metadata says its batch rows are computed independently, bit for bit."""
    return metadata.get(ACTIVATIONS_KEY) == PER_ROW


__all__ = [
    "ACTIVATIONS_KEY",
    "PER_ROW",
    "per_row_activations",
    "portable_softmax",
    "rows_are_independent",
    "token_sums_as_reductions",
]
