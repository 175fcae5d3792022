"""The torch side of inference (the `train` extra): the reference predictor and the ONNX export.

`finsent train` exports the scoring graph once, into the artifact; scoring itself then runs on
ONNX Runtime alone (model/infer.py).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from finsent.model.backbone import backbone_dir
from finsent.model.infer import BackboneText, Predictor
from finsent.model.network import FinsentNetwork

if TYPE_CHECKING:
    import onnx

# How the scoring graph's weights are quantized (recorded in the artifact's config.json).
# - per-channel scales: a scale per output row, not one per matrix;
# - reduce_range (7-bit weights): on AVX2 without VNNI, ONNX Runtime's u8×s8 kernel adds pairs
#   of products in 16 bits, which saturates with full-range weights; 7 bits cannot, so the
#   integer products are exact there and on VNNI alike, and int8 scores agree across CPUs;
# - only matrices with constant weights are quantized: the attention products between two
#   activations (Q·Kᵀ, α·V) stay fp32;
# - portable_softmax: each Softmax written as ReduceMax, Sub, Exp, ReduceSum, Div (see
#   `portable_softmax`), the one change that makes the graph's outputs bit-identical across CPUs.
QUANTIZATION = {
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "matmul_const_b_only": True,
    "portable_softmax": True,
}


class TorchPredictor(Predictor):
    def __init__(
        self,
        network: FinsentNetwork,
        text: BackboneText,
        max_length: int,
        quantize: bool = False,
        batch_size: int = 64,
        batch_invariant: bool = False,
    ) -> None:
        # One worker: torch's thread count is process-wide, so it parallelizes each run itself.
        super().__init__(text, max_length, batch_size, batch_invariant)
        network = network.eval()
        if quantize:
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # deprecated API, still the fastest
                network = quantize_dynamic(
                    copy.deepcopy(network), {torch.nn.Linear}, dtype=torch.qint8
                )
        self.network = network
        self.backend = "torch-int8" if quantize else "torch-fp32"

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            out = self.network(torch.from_numpy(ids), torch.from_numpy(mask))
            outputs = (out.sentiment_probs, out.topic_probs, out.attention)
        return tuple(t.float().numpy() for t in outputs)


class _ScoringGraph(torch.nn.Module):
    """The network from word vectors to plain tensor outputs, for ONNX export."""

    def __init__(self, network: FinsentNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, word_vectors: torch.Tensor, attention_mask: torch.Tensor):
        out = self.network(None, attention_mask, word_vectors=word_vectors)
        return out.sentiment_probs, out.topic_probs, out.attention


def export_onnx(
    network: FinsentNetwork,
    out_dir: Path,
    keep_fp32: bool = False,
    quantization: dict | None = None,
) -> Path:
    """Export the scoring graph to ONNX, weights quantized to int8; returns the int8 path.

    Written to a temporary name and renamed, so a crash never leaves a half-written model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = {**QUANTIZATION, **(quantization or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32, int8 = out_dir / "model-fp32.onnx", out_dir / "model-int8.onnx"
    hidden = network.config.hidden_size
    vectors, mask = torch.zeros((2, 8, hidden)), torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        # Tracing notes about Python-side shape checks; the graph is checked against torch
        # with padded batches in tests/model/test_infer.py.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ScoringGraph(network.eval()),
            (vectors, mask),
            str(fp32),
            input_names=["word_vectors", "attention_mask"],
            output_names=["sentiment_probs", "topic_probs", "attention"],
            dynamic_axes={
                "word_vectors": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "sentiment_probs": {0: "batch"},
                "topic_probs": {0: "batch"},
                "attention": {0: "batch", 1: "tokens"},
            },
            opset_version=17,
            dynamo=False,
        )
    partial = out_dir / "model-int8.onnx.partial"
    logging.disable(logging.WARNING)  # the quantizer logs a root line per tensor, and advice
    try:
        quantize_dynamic(
            str(fp32),
            str(partial),
            weight_type=getattr(QuantType, options["weight_type"]),
            per_channel=options["per_channel"],
            reduce_range=options["reduce_range"],
            extra_options={"MatMulConstBOnly": options["matmul_const_b_only"]},
        )
    finally:
        logging.disable(logging.NOTSET)
    if options["portable_softmax"]:
        import onnx

        model = onnx.load(str(partial))
        portable_softmax(model)
        onnx.save(model, str(partial))
    partial.replace(int8)
    if not keep_fp32:
        fp32.unlink()
    return int8


def portable_softmax(model: onnx.ModelProto) -> int:
    """Rewrite every Softmax of `model` as ReduceMax, Sub, Exp, ReduceSum, Div; returns how many.

    ONNX Runtime picks its Softmax kernel by the CPU at run time (AVX-512 or AVX2), and the two
    differ in the last bit of some probabilities. Dynamic int8 quantization downstream turns
    such a bit, now and then, into another rounded activation, and the same text's score then
    differs between the two CPUs by up to 0.17. With the plain operators every node of the
    graph gave the same bits on both (bench/bench_cpu_determinism.py compares this CPU with
    `qemu-x86_64 -cpu Haswell`).
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # older Softmax flattens to 2-D first: another decomposition
        raise ValueError(f"portable_softmax needs opset 13 or later, not {opset}")
    graph = model.graph
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        x, y = node.input[0], node.output[0]
        name = f"{node.name or y}/portable"
        axes = f"{name}/axes"
        graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), axes))
        # ReduceMax takes its axes as an input from opset 18, as an attribute before.
        if opset >= 18:
            row_max = helper.make_node("ReduceMax", [x, axes], [f"{name}/max"], keepdims=1)
        else:
            row_max = helper.make_node("ReduceMax", [x], [f"{name}/max"], axes=[axis], keepdims=1)
        row_max.name = f"{name}/ReduceMax"
        nodes += [
            row_max,
            helper.make_node("Sub", [x, f"{name}/max"], [f"{name}/shifted"], name=f"{name}/Sub"),
            helper.make_node("Exp", [f"{name}/shifted"], [f"{name}/exp"], name=f"{name}/Exp"),
            helper.make_node(
                "ReduceSum",
                [f"{name}/exp", axes],
                [f"{name}/sum"],
                name=f"{name}/ReduceSum",
                keepdims=1,
            ),
            helper.make_node("Div", [f"{name}/exp", f"{name}/sum"], [y], name=f"{name}/Div"),
        ]
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def load_tokenizer():
    """The backbone's transformers tokenizer, for training (scoring uses `BackboneText`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(backbone_dir(), local_files_only=True)


__all__ = ["QUANTIZATION", "TorchPredictor", "export_onnx", "load_tokenizer", "portable_softmax"]
