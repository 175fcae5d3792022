"""Are scores independent of the CPU? This CPU against an emulated AVX2-only one, field by field.

Scores a fixed sample (distinct headlines of the 2023 H1 RSS archive, every k-th, and the
PhraseBank 50Agree test sentences) with the default scorer (`AttentionScorer`: the shipped
int8 graph, batch-invariant) twice: natively, and under `qemu-x86_64 -cpu Haswell` (Debian's
`qemu-user`), which has AVX2 and FMA but no AVX-512, so ONNX Runtime and numpy pick their AVX2
kernels. Both runs are single-threaded children of this script. Prints the vector features
each side detected, then how many items differ in each `ScoredItem` field (score, confidence,
sentiment, topic, topic_probs, top_tokens) and in the raw float32 probabilities (bits), with
the largest score difference. Exits 1 if anything differs.

Emulation is slow: about 0.5 s per headline on one core, so the default sample (1,200) takes
about 10 minutes.

    PYTHONPATH=. .venv/bin/python bench/bench_cpu_determinism.py [--archive 800] [--phrasebank 400]
        [--cpu Haswell] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

# The workspace's datasets beside the checkout (the product's default is the user data dir).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ARCHIVE = SHARED_DATASETS / "rss_link_db_2023_business_h1"
FIELDS = ("score", "confidence", "sentiment", "topic", "topic_probs", "top_tokens")
# numpy's names for the features that pick kernels (from CPUID, so right under emulation too,
# where /proc/cpuinfo still shows the host's flags).
FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI", "AVX512BF16", "AVX512FP16")


def sample(archive: int, phrasebank: int) -> list[str]:
    """Every k-th distinct archive title, in the archive's file order, then PhraseBank."""
    texts: list[str] = []
    if archive:
        from finsent.core.feed_files import read_archive

        seen: dict[str, None] = {}
        for _, _, row in read_archive(ARCHIVE):
            title = (row.get("title") or "").strip() if isinstance(row, dict) else ""
            if title:
                seen.setdefault(title)
        titles = list(seen)
        texts += titles[:: max(1, len(titles) // archive)][:archive]
    if phrasebank:
        from finsent.model.data import standard_corpus

        rows = standard_corpus(SHARED_DATASETS).tests["phrasebank-50agree"][:phrasebank]
        texts += [r.text for r in rows]
    return texts


def child(texts_file: Path, out_file: Path) -> None:
    """Score the texts as the scoring stage does; write each ScoredItem's fields and the bits."""
    from numpy._core._multiarray_umath import __cpu_features__

    from finsent.core.records import NewsItem
    from finsent.model.infer import AttentionScorer

    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    scorer = AttentionScorer(threads=1)
    captured = []
    predict = scorer.predictor.predict

    def capture(batch, explain=True):  # the raw float32 probabilities behind the fields
        predictions = predict(batch, explain)
        captured.append(predictions)
        return predictions

    scorer.predictor.predict = capture  # type: ignore[method-assign]
    at = datetime(2023, 1, 1, tzinfo=UTC)
    items = [
        NewsItem(id=str(i), source="sample", title=t, published_at=at, fetched_at=at)
        for i, t in enumerate(texts)
    ]
    started = time.perf_counter()
    scored = scorer.score(items)
    seconds = time.perf_counter() - started
    (predictions,) = captured
    out_file.write_text(
        json.dumps(
            {
                "features": {f: bool(__cpu_features__.get(f)) for f in FEATURES},
                "seconds": round(seconds, 1),
                "items": [
                    {field: getattr(s, field) for field in FIELDS}
                    | {
                        "sentiment_bits": predictions.sentiment_probs[i].view(np.uint32).tolist(),
                        "topic_bits": predictions.topic_probs[i].view(np.uint32).tolist(),
                    }
                    for i, s in enumerate(scored)
                ],
            }
        ),
        encoding="utf-8",
    )


def run_child(prefix: list[str], texts_file: Path, out: Path) -> dict[str, Any]:
    command = [*prefix, sys.executable, __file__, "--child", str(texts_file), str(out)]
    # qemu warns on stderr about host CPUID bits TCG lacks; a failure still shows its output.
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def compare(here: list[dict], there: list[dict]) -> dict[str, Any]:
    differing = {
        field: sum(a[field] != b[field] for a, b in zip(here, there, strict=True))
        for field in (*FIELDS, "sentiment_bits", "topic_bits")
    }
    score_gap = max(abs(a["score"] - b["score"]) for a, b in zip(here, there, strict=True))
    any_field = sum(
        any(a[f] != b[f] for f in (*FIELDS, "sentiment_bits", "topic_bits"))
        for a, b in zip(here, there, strict=True)
    )
    return {"differing": differing, "items_differing": any_field, "max_abs_score_diff": score_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=int, default=800, help="archive headlines")
    parser.add_argument("--phrasebank", type=int, default=400, help="PhraseBank sentences")
    parser.add_argument("--cpu", default="Haswell", help="qemu CPU model (AVX2, no AVX-512)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    qemu = shutil.which("qemu-x86_64")
    if not qemu:
        sys.exit("needs qemu-x86_64 (Debian/Ubuntu: apt-get install qemu-user)")
    print(machine_line(), flush=True)
    texts = sample(args.archive, args.phrasebank)
    print(f"sample: {len(texts)} texts ({args.archive} archive, {args.phrasebank} PhraseBank)")
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        runs = {
            "native": run_child([], texts_file, Path(tmp) / "native.json"),
            f"qemu {args.cpu}": run_child([qemu, "-cpu", args.cpu], texts_file, Path(tmp) / "q"),
        }
    for name, run in runs.items():
        have = [f for f, on in run["features"].items() if on]
        print(f"{name}: {', '.join(have) or 'none of ' + '/'.join(FEATURES)}; {run['seconds']} s")
    native, emulated = (run["items"] for run in runs.values())
    result = compare(native, emulated) | {
        "items": len(texts),
        "features": {name: run["features"] for name, run in runs.items()},
    }
    for field, count in result["differing"].items():
        print(f"  {field:15} {count:5} of {len(texts)} items differ")
    print(f"items with any difference: {result['items_differing']}")
    print(f"largest |score difference|: {result['max_abs_score_diff']:.6f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    sys.exit(1 if result["items_differing"] else 0)


if __name__ == "__main__":
    main()
