"""Model inference throughput: sentences/s at batch 1, 16 and 64 for each backend.

Backends: torch-fp32 (the trained network as is), torch-int8 (PyTorch dynamic quantization)
and onnx-int8 (ONNX Runtime, int8 weights). The reference, timed in the same run, is what a
plain `transformers` user would write: a text-classification pipeline over the same MiniLM
encoder, called once per headline. Each figure is the median of --repeats runs.

Then the batch-invariant forms, the scoring stage's default: the artifact's graph (per-row
activation scales, batched) against the previous default, the same network exported with one
activation scale per tensor and so scored text by text, and a check that the batched form gave
each text the bits it gets alone.

    .venv/bin/python bench/bench_model.py [--artifact DIR] [--items 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.model.artifact import quiet_transformers, read_artifact, set_threads
from finsent.model.backbone import backbone_dir
from finsent.model.data import unlabelled_headlines
from finsent.model.infer import INVARIANT_BATCH, make_predictor

# The workspace's datasets beside the checkout (the product's default is the user data dir).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def headlines(n: int, seed: int = 0) -> list[str]:
    """A seeded sample of real headlines from the replay corpora (what the scorer sees in
    backtests); our own generated feed where the shared datasets are absent."""
    texts = unlabelled_headlines(SHARED_DATASETS)
    if not texts:
        from datetime import UTC, datetime

        from finsent.ingest.sample_feed import generate

        texts = [row["title"] for row in generate(end=datetime.now(UTC), hours=48)]
    random.Random(seed).shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n]


def rate(run, items: int, repeats: int) -> float:
    run()  # warm-up: allocators, ONNX Runtime kernels, tokenizer caches
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(items / (time.perf_counter() - started))
    return statistics.median(samples)


def previous_default_rate(artifact, threads: int, texts: list[str], repeats: int) -> float:
    """Headlines/s of the previous default: the artifact's network exported with one activation
    scale per tensor (not batch-invariant when batched), so scored text by text."""
    from finsent.model.artifact import load_artifact
    from finsent.model.infer import BackboneText, OnnxPredictor
    from finsent.model.torch_infer import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        graph = export_onnx(
            load_artifact(artifact.path).network,
            Path(folder),
            quantization={"activations": None},
            max_length=artifact.max_length,
        )
        previous = OnnxPredictor(
            graph, BackboneText(), artifact.max_length, threads, batch_invariant=True
        )
        if previous.rows_are_independent:
            raise RuntimeError("the per-tensor export should not claim independent rows")
        return rate(lambda: previous.predict(texts), len(texts), repeats)


def main() -> None:
    # Before torch loads: its idle OpenMP threads spin, and took the cores from the ONNX
    # Runtime runs timed after them (the batch-invariant default measured 861/s beside 1,219/s).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--items", type=int, default=1024)
    parser.add_argument("--single-items", type=int, default=128, help="items timed at batch 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    print(machine_line(), flush=True)

    quiet_transformers()
    threads = set_threads(args.threads)
    texts = headlines(args.items)
    artifact = read_artifact(args.artifact)
    print(
        f"model {artifact.version}, {len(texts)} headlines, {threads} threads, "
        f"median of {args.repeats}"
    )

    # Reference: a plain pipeline, one call per headline.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    reference = pipeline(
        "text-classification",
        model=AutoModelForSequenceClassification.from_pretrained(
            backbone_dir(), num_labels=3, local_files_only=True
        ),
        tokenizer=AutoTokenizer.from_pretrained(backbone_dir(), local_files_only=True),
        device="cpu",
    )
    single = texts[: args.single_items]
    reference_rate = rate(lambda: [reference(t) for t in single], len(single), args.repeats)
    print(f"{'reference: transformers pipeline, per item':44} {reference_rate:9.1f}/s   1.00×")

    results = {}
    for backend in ("torch-fp32", "torch-int8", "onnx-int8"):
        for batch in (1, 16, 64):
            predictor = make_predictor(artifact, backend, threads, batch)
            subset = single if batch == 1 else texts
            value = rate(lambda p=predictor, s=subset: p.predict(s), len(subset), args.repeats)
            results[(backend, batch)] = value
            print(
                f"{backend + f', batch {batch}':44} {value:9.1f}/s {value / reference_rate:6.2f}×"
            )
    # What the scoring stage runs by default (model/infer.py, batch invariance), beside the
    # previous default: the same weights with one activation scale per tensor, text by text.
    invariant = make_predictor(artifact, "onnx-int8", threads, batch_invariant=True)
    value = rate(lambda: invariant.predict(texts), len(texts), args.repeats)
    previous_rate = previous_default_rate(artifact, threads, texts, args.repeats)
    print(
        f"{'previous default: per-tensor int8, text by text':44} {previous_rate:9.1f}/s "
        f"{previous_rate / reference_rate:6.2f}×"
    )
    print(
        f"{'onnx-int8, batch-invariant (the default)':44} {value:9.1f}/s "
        f"{value / reference_rate:6.2f}×   {value / previous_rate:.2f}× the previous default"
    )
    together = invariant.predict(texts, explain=False)
    sample = texts[:: max(1, len(texts) // 200)]
    alone = [invariant.predict([t], explain=False) for t in sample]
    differing = sum(
        not (
            np.array_equal(a.sentiment_probs[0], together.sentiment_probs[texts.index(t)])
            and np.array_equal(a.topic_probs[0], together.topic_probs[texts.index(t)])
        )
        for t, a in zip(sample, alone, strict=True)
    )
    print(
        f"batch invariance: {len(sample) - differing} of {len(sample)} headlines got the same "
        f"float32 bits alone as in their batches (rows independent: "
        f"{invariant.rows_are_independent})"
    )
    results[("onnx-int8 batch-invariant", INVARIANT_BATCH)] = value
    best = max(results, key=results.get)
    print(
        f"fastest: {best[0]} at batch {best[1]}: {results[best]:.0f} headlines/s, "
        f"{results[best] / reference_rate:.1f}× the reference"
    )
    print(
        f"batch 64: onnx-int8 / torch-fp32 = "
        f"{results[('onnx-int8', 64)] / results[('torch-fp32', 64)]:.2f}×, "
        f"torch-int8 / torch-fp32 = {results[('torch-int8', 64)] / results[('torch-fp32', 64)]:.2f}×"
    )


if __name__ == "__main__":
    main()
