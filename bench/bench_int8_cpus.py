"""int8 against fp32 as a user sees it, and int8 on AVX2 against this CPU: labels and accuracy.

Scores the PhraseBank 50Agree test split (`finsent evaluate`'s split) with the shipped int8
graph, batch-invariant (what the scorer runs), and with the fp32 torch network (the reference,
measured in the same run). With --emulate, the int8 half runs again under
`qemu-x86_64 -cpu Haswell` (Debian's qemu-user): ONNX Runtime then picks its AVX2 kernels, so one
machine shows how an AVX2-only CPU scores, without owning one. That half is slow (about 12 min
for 970 headlines).

    .venv/bin/python bench/bench_int8_cpus.py [--items 970] [--emulate]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.model.artifact import read_artifact
from finsent.model.data import standard_corpus
from finsent.model.infer import make_predictor

# The workspace's datasets beside the checkout (the product's default is the user data dir).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def fixed_set(items: int) -> tuple[list[str], np.ndarray]:
    rows = standard_corpus(SHARED_DATASETS).tests["phrasebank-50agree"][:items]
    return [r.text for r in rows], np.array([r.sentiment for r in rows])


def int8_probs(texts: list[str]) -> np.ndarray:
    predictor = make_predictor(read_artifact(), "onnx-int8", threads=1, batch_invariant=True)
    return predictor.predict(texts, explain=False).sentiment_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=970)
    parser.add_argument("--emulate", action="store_true", help="also int8 on an emulated AVX2 CPU")
    parser.add_argument("--int8-only", type=Path, help=argparse.SUPPRESS)  # the emulated child
    args = parser.parse_args()
    texts, labels = fixed_set(args.items)
    if args.int8_only:
        np.save(args.int8_only, int8_probs(texts))
        return
    print(machine_line(), flush=True)
    fp32 = make_predictor(read_artifact(), "torch-fp32").predict(texts, explain=False)
    here = int8_probs(texts)
    runs = {"this CPU": here}
    if args.emulate:
        qemu = shutil.which("qemu-x86_64")
        if not qemu:
            sys.exit("--emulate needs qemu-user (apt-get install qemu-user)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "avx2.npy"
            command = [qemu, "-cpu", "Haswell", sys.executable, __file__]
            command += ["--items", str(args.items), "--int8-only", str(out)]
            subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
            runs["emulated AVX2 (Haswell)"] = np.load(out)
    reference = fp32.sentiment
    accuracy = float((reference == labels).mean())
    result = {"items": len(texts), "fp32_accuracy": round(accuracy, 4), "int8": {}}
    print(f"PhraseBank 50Agree test, {len(texts)} headlines: fp32 accuracy {accuracy:.4f}")
    for name, probs in runs.items():
        predicted = probs.argmax(1)
        figures = {
            "accuracy": round(float((predicted == labels).mean()), 4),
            "points_vs_fp32": round(100 * (float((predicted == labels).mean()) - accuracy), 2),
            "labels_as_fp32": round(float((predicted == reference).mean()), 4),
        }
        result["int8"][name] = figures
        print(
            f"int8 on {name}: accuracy {figures['accuracy']:.4f} "
            f"({figures['points_vs_fp32']:+.2f} points against fp32), "
            f"same label as fp32 on {100 * figures['labels_as_fp32']:.1f}%"
        )
    if len(runs) == 2:
        a, b = runs.values()
        same = float((a.argmax(1) == b.argmax(1)).mean())
        print(
            f"AVX2 against this CPU: same label on {100 * same:.1f}%, "
            f"largest probability difference {np.abs(a - b).max():.3f}"
        )
        result["avx2_vs_here"] = {"same_label": round(same, 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
