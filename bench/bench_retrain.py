"""A real retrain on analysts' corrections made from the silver test set, through the gate.

    .venv/bin/python bench/bench_retrain.py [--data ../shared/datasets] [--corrections 200]
        [--mistakes] [--seed 7]

It draws ``--corrections`` headlines of the silver test split (seeded), labels each with its
silver sentiment and topic as an analyst's correction, three hours apart, into a throwaway
store and cache, and runs ``finsent retrain``'s library path with the default settings: the
newest 20 % held out, the candidate against the shipped model on the fixed splits (minus the
corrected texts) and on the held-out corrections. ``--mistakes`` draws only headlines the
shipped model gets wrong on sentiment or topic, as a review queue would surface them (then
the silver split left behind is the model's right calls, so its figures flatter the running
model). Prints the gate's table, the verdict, and the wall and CPU time.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.artifact import read_artifact
from finsent.model.corrections import Correction
from finsent.model.data import standard_corpus
from finsent.model.gate import GateRule
from finsent.model.infer import make_predictor
from finsent.model.registry import ModelRegistry, RegistryConfig
from finsent.model.retrain import RetrainConfig, retrain
from finsent.model.topics import TOPICS
from finsent.runtime.store import Store

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def silver_test(data: Path) -> list[dict[str, str]]:
    with (data / "headline_labels_silver" / "headlines_silver.csv").open(encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row["split"] == "test"]


def wrong_calls(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    predicted = make_predictor(read_artifact(None), "onnx-int8", 0, 64).predict(
        [row["text"] for row in rows], explain=False
    )
    return [
        row
        for i, row in enumerate(rows)
        if SENTIMENTS[int(predicted.sentiment[i])] != row["sentiment"]
        or TOPICS[int(predicted.topic[i])] != row["topic"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--corrections", type=int, default=200)
    parser.add_argument("--mistakes", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(machine_line())
    rows = silver_test(args.data)
    pool = wrong_calls(rows) if args.mistakes else rows
    random.Random(args.seed).shuffle(pool)
    chosen = pool[: args.corrections]
    print(f"{len(chosen)} corrections from {len(pool)} of the {len(rows)} silver test headlines"
          f"{' the shipped model gets wrong' if args.mistakes else ''}")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'store.db'}")
        store.add_labels(
            [
                Correction(
                    story_id=hashlib.sha256(row["text"].encode()).hexdigest()[:16],
                    text=row["text"],
                    sentiment=row["sentiment"],
                    topic=row["topic"],
                    by="analyst",
                    at=T0 + timedelta(hours=3 * n),
                    origin="import",
                ).row()
                for n, row in enumerate(chosen)
            ]
        )
        registry = ModelRegistry(store, RegistryConfig(Path(tmp) / "models", None))
        corpus = standard_corpus(args.data)
        wall, cpu = time.perf_counter(), time.process_time()
        result = retrain(
            store,
            registry,
            corpus,
            RetrainConfig(auto_promote=False),
            GateRule(),
            now=datetime.now(UTC),
            by="bench",
            progress=True,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()

    print(f"\n{'check':45} {'current':>8} {'candidate':>10} {'delta':>8}  needs")
    for check in result.decision.checks:
        print(
            f"{check.name:45} {check.current:8.4f} {check.candidate:10.4f} "
            f"{check.delta:+8.4f}  {check.needed} {'ok' if check.passed else 'FAIL'}"
        )
    print(f"\n{'PASSED' if result.decision.passed else 'REFUSED'}:")
    for reason in result.decision.reasons:
        print(f"  {reason}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"trained on {result.trained_on} corrections, judged on {result.held_out}; "
        f"wall {wall:.0f} s, CPU {cpu:.0f} s, peak RSS {peak:.0f} MiB; phases {result.seconds}"
    )


if __name__ == "__main__":
    main()
