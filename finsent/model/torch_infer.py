"""The torch side of inference (the `train` extra): the reference predictor and the ONNX export.

`finsent train` exports the scoring graph once, into the artifact; scoring itself then runs on
ONNX Runtime alone (model/infer.py).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from finsent.model.backbone import backbone_dir
from finsent.model.infer import BackboneText, Predictor
from finsent.model.network import FinsentNetwork
from finsent.model.onnx_rewrites import (
    per_row_activations,
    portable_softmax,
    token_sums_as_reductions,
)

# How the scoring graph's weights are quantized (recorded in the artifact's config.json).
# - per-channel scales: a scale per output row, not one per matrix;
# - reduce_range (7-bit weights): on AVX2 without VNNI, ONNX Runtime's u8×s8 kernel adds pairs
#   of products in 16 bits, which saturates with full-range weights; 7 bits cannot, so the
#   integer products are exact there and on VNNI alike, and int8 scores agree across CPUs;
# - only matrices with constant weights are quantized: the attention products between two
#   activations (Q·Kᵀ, α·V) stay fp32;
# - portable_softmax: each Softmax written as plain operators (model/onnx_rewrites.py), the
#   one change that makes the graph's outputs bit-identical across CPUs;
# - per-row activations: each token's vector quantized symmetrically on its own scale, not on
#   one per tensor, and the pooling's token sum over a fixed width (model/onnx_rewrites.py), so
#   a batch's rows are computed independently and batched scoring keeps batch invariance.
QUANTIZATION = {
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "matmul_const_b_only": True,
    "portable_softmax": True,
    "activations": "per-row",
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
    max_length: int = 64,
) -> Path:
    """Export the scoring graph to ONNX, weights quantized to int8; returns the int8 path.

    `max_length` is the tokenizer's: softmax rows up to it sum alike however far they are
    padded. Written to a temporary name and renamed, so a crash never leaves a half-written
    model.
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
    import onnx

    model = onnx.load(str(partial))
    if options["portable_softmax"]:
        portable_softmax(model, row_width=max_length)
    if options.get("activations") == "per-row":
        per_row_activations(model)
        token_sums_as_reductions(model, row_width=max_length)
    onnx.save(model, str(partial))
    partial.replace(int8)
    if not keep_fp32:
        fp32.unlink()
    return int8


def load_tokenizer():
    """The backbone's transformers tokenizer, for training (scoring uses `BackboneText`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(backbone_dir(), local_files_only=True)


__all__ = ["QUANTIZATION", "TorchPredictor", "export_onnx", "load_tokenizer"]
