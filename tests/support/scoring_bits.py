"""The shipped scorer's float32 bits, recorded on one real CPU and checked on whatever CPU runs
the tests (`tests/model/test_infer.py`).

`scoring_bits.json`, beside this file, holds 160 of our own generated headlines and, for each,
the bits of the sentiment and topic probabilities and the top words that the default scorer
(onnx-int8, batch-invariant, batches of 16) gave on the CPU it names. Every `ScoredItem` field
is an exact function of these, and the windows and alerts of the scores, so a feed gives the
same alerts on two CPUs only if these bits match on both.

After a change to the shipped graph or to ONNX Runtime, rewrite the file (on x86-64 with AVX2
and FMA) and say so in the commit:

    PYTHONPATH=.:tests .venv/bin/python -m support.scoring_bits --write
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RECORDED = Path(__file__).with_name("scoring_bits.json")
_FLAGS = ("AVX2", "FMA3", "AVX512F", "AVX512VNNI")


def graph_sha256() -> str:
    from finsent.model.artifact import ONNX_MODEL, read_artifact

    return hashlib.sha256((read_artifact(None).path / ONNX_MODEL).read_bytes()).hexdigest()


def cpu_line() -> str:
    from numpy._core._multiarray_umath import __cpu_features__ as features

    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere the platform's own name
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    flags = ", ".join(f"{name} {'yes' if features.get(name) else 'no'}" for name in _FLAGS)
    return f"{model}: {flags}"


def score_bits(texts: list[str]) -> dict[str, list]:
    """What every `ScoredItem` field is an exact function of, as the scoring stage computes it:
    the default scorer, batched (two single-threaded sessions, batches of 16)."""
    from finsent.model.infer import AttentionScorer

    predictions = AttentionScorer(threads=2).predictor.predict(texts)
    return {
        "sentiment": predictions.sentiment_probs.view(np.uint32).tolist(),
        "topic": predictions.topic_probs.view(np.uint32).tolist(),
        "top_words": [list(words) for words in predictions.top_tokens],
    }


def recorded_texts() -> list[str]:
    """Headlines of our own sample feed (every fifth distinct title of a fixed day) and a
    few written here; none from the shared datasets."""
    from finsent.ingest.sample_feed import generate

    titles = sorted(
        {row["title"] for row in generate(end=datetime(2026, 1, 5, tzinfo=UTC), hours=24)}
    )
    written = [
        "Dollar edges higher against the euro as traders weigh rate outlook",
        "Regional lender's shares halted after deposit outflows, regulators step in",
        "Chipmaker beats estimates but guidance disappoints; stock slides 8% after hours",
        "Gold hits record as investors seek safety",
        "Board approves 10% dividend increase and $2bn buyback",
    ]
    return titles[::5][:155] + written


def write() -> None:
    import onnxruntime

    texts = recorded_texts()
    RECORDED.write_text(
        json.dumps(
            {
                "written_on": cpu_line(),
                "onnxruntime": onnxruntime.__version__,
                "graph_sha256": graph_sha256(),
                "texts": texts,
                **score_bits(texts),
            },
            indent=None,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {len(texts)} texts' bits to {RECORDED.name} ({cpu_line()})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m support.scoring_bits --write")
    write()
