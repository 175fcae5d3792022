"""`finsent evaluate`: the model against baselines, side by side, on the same fixed test splits.

Splits (see `model.data.standard_corpus`): Financial PhraseBank 50Agree and AllAgree, each a
stratified 80/20 split with seed 0; the Twitter Financial News validation file; the silver
headline test split (topic and sentiment).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.data import SPLIT_SEED, Corpus, Example
from finsent.model.topics import TOPICS


def task_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (over the classes that occur), per-class figures and the confusion."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    present = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=present, zero_division=0
    )
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "per_class": {
            labels[c]: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for c, p, r, f, s in zip(present, precision, recall, f1, support, strict=True)
        },
        "labels": [labels[c] for c in present],
        "confusion": confusion_matrix(y_true, y_pred, labels=present).tolist(),
    }


def expected_calibration_error(probs: Any, truth: Any, bins: int = 15) -> float:
    """ECE: over equal-width bins of the top probability, the gap between confidence and
    accuracy, weighted by the bin's share of the rows."""
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(truth)
    # A top probability of exactly 1.0 goes in the last bin, not one past it.
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            gap += chosen.mean() * abs(confidence[chosen].mean() - correct[chosen].mean())
    return float(gap)


def _labelled(rows: Sequence[Example], task: str) -> list[Example]:
    return [e for e in rows if getattr(e, task) is not None]


def corpus_report(predictor, corpus: Corpus) -> dict[str, dict[str, dict]]:
    """Per test set and task: metrics of one predictor (`model.infer.Predictor`)."""
    report: dict[str, dict[str, dict]] = {}
    for name, rows in corpus.tests.items():
        predictions = predictor.predict([e.text for e in rows], explain=False)
        report[name] = {}
        for task, labels, probs in (
            ("sentiment", SENTIMENTS, predictions.sentiment_probs),
            ("topic", TOPICS, predictions.topic_probs),
        ):
            rows_with_label = [i for i, e in enumerate(rows) if getattr(e, task) is not None]
            if not rows_with_label:
                continue
            truth = [getattr(rows[i], task) for i in rows_with_label]
            labelled_probs = probs[rows_with_label]
            metrics = task_metrics(truth, [int(p) for p in labelled_probs.argmax(-1)], labels)
            metrics["ece"] = round(expected_calibration_error(labelled_probs, truth), 4)
            report[name][task] = metrics
    return report


def _method_report(
    corpus: Corpus,
    sentiment: Callable[[list[str]], Sequence[int]] | None,
    topic: Callable[[list[str]], Sequence[int]] | None,
) -> dict[str, dict[str, dict]]:
    report: dict[str, dict[str, dict]] = {}
    for name, rows in corpus.tests.items():
        report[name] = {}
        for task, labels, predict in (
            ("sentiment", SENTIMENTS, sentiment),
            ("topic", TOPICS, topic),
        ):
            labelled = _labelled(rows, task)
            if predict is None or not labelled:
                continue
            predicted = list(predict([e.text for e in labelled]))
            report[name][task] = task_metrics(
                [getattr(e, task) for e in labelled], [int(p) for p in predicted], labels
            )
    return report


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def evaluate(
    corpus: Corpus,
    artifact_path=None,
    backend: str = "auto",
    baselines: bool = True,
    threads: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = print,
    teachers: Sequence[Any] = (),
) -> dict[str, Any]:
    """Every method's metrics on every test split, plus timings; keys are method names."""
    from finsent.model.artifact import read_artifact, set_threads
    from finsent.model.infer import BackboneText, make_predictor

    set_threads(threads)
    artifact = read_artifact(artifact_path)
    text = BackboneText()
    methods: dict[str, dict[str, Any]] = {}

    def run(name: str, make: Callable[[], dict]) -> None:
        started = time.perf_counter()
        say(f"evaluating {name} …")
        methods[name] = {"report": make(), "seconds": round(time.perf_counter() - started, 1)}

    if baselines:
        from finsent.model.baselines import (
            FrozenEncoderBaseline,
            lexicon_sentiment,
            vader_sentiment,
        )
        from finsent.model.topics import keyword_topic

        run(
            "Loughran–McDonald (topics: keywords)",
            lambda: _method_report(
                corpus,
                lexicon_sentiment,
                lambda texts: [TOPICS.index(keyword_topic(t)[0]) for t in texts],
            ),
        )
        run("VADER", lambda: _method_report(corpus, vader_sentiment, None))

        def frozen() -> dict:
            baseline = FrozenEncoderBaseline(progress=progress).fit(corpus.train)
            return _method_report(corpus, baseline.predict_sentiment, baseline.predict_topic)

        run("frozen MiniLM + logistic regression", frozen)

    if teachers:
        from finsent.model.teacher import load_teacher
        from finsent.model.torch_infer import TorchPredictor

    for teacher_path in teachers:
        teacher = load_teacher(teacher_path)
        predictor = TorchPredictor(
            teacher.network, BackboneText(embeddings=False), artifact.max_length
        )
        run(f"teacher {teacher.meta['name']}", functools.partial(corpus_report, predictor, corpus))

    if torch_available():
        fp32 = make_predictor(artifact, "torch-fp32", threads, text=text)
        run(f"{artifact.meta['name']} fp32", lambda: corpus_report(fp32, corpus))
    else:
        say("torch is not installed (the train extra): no fp32 reference")
    optimized = make_predictor(artifact, backend, threads, text=text)
    if optimized.backend != "torch-fp32":
        run(
            f"{artifact.meta['name']} {optimized.backend}", lambda: corpus_report(optimized, corpus)
        )
        # What the scoring stage runs by default: each text alone (see model/infer.py).
        invariant = make_predictor(artifact, backend, threads, batch_invariant=True, text=text)
        run(
            f"{artifact.meta['name']} {invariant.backend} batch-invariant",
            lambda: corpus_report(invariant, corpus),
        )
    return {
        "model_version": artifact.version,
        "split": f"PhraseBank: stratified 80/20, seed {SPLIT_SEED}; Twitter: sent_valid.csv; "
        "silver: its test split",
        "sizes": {name: len(rows) for name, rows in corpus.tests.items()},
        "methods": methods,
    }


def render(result: dict[str, Any], console=None) -> None:
    """Side-by-side tables per test set and task, then the model's confusion matrices."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]model[/] {result['model_version']}   [bold]splits[/] {result['split']}")
    methods = result["methods"]
    names = list(result["sizes"])
    for test in names:
        for task in ("sentiment", "topic"):
            rows = [(m, v["report"].get(test, {}).get(task)) for m, v in methods.items()]
            rows = [(m, r) for m, r in rows if r]
            if not rows:
                continue
            table = Table(title=f"{test} · {task} (n={rows[0][1]['n']})", title_justify="left")
            table.add_column("method")
            table.add_column("accuracy", justify="right")
            table.add_column("macro-F1", justify="right")
            table.add_column("ECE", justify="right")
            for method, r in rows:
                ece = f"{r['ece']:.4f}" if "ece" in r else "–"
                table.add_row(method, f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}", ece)
            console.print(table)
    model_methods = [m for m in methods if m.startswith(result["model_version"].split("+")[0])]
    for method in model_methods:
        for test in names:
            for task, r in methods[method]["report"].get(test, {}).items():
                if task == "topic":
                    continue  # 20×20 does not fit a terminal; it is in --json
                _confusion(console, f"{method} · {test} · {task}", r)
    if len(model_methods) == 2:
        fp32, fast = (methods[m]["report"] for m in model_methods)
        for test in names:
            for task in fp32.get(test, {}):
                delta = 100 * (fast[test][task]["accuracy"] - fp32[test][task]["accuracy"])
                console.print(
                    f"accuracy cost of {model_methods[1]} on {test}/{task}: {-delta:+.2f} points"
                )


def _confusion(console, title: str, metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{title} (rows: truth, columns: predicted)", title_justify="left")
    table.add_column("")
    for label in metrics["labels"]:
        table.add_column(label[:10], justify="right")
    for label, counts in zip(metrics["labels"], metrics["confusion"], strict=True):
        table.add_row(label[:10], *(str(c) for c in counts))
    console.print(table)


def summary(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{method: {"test/task": accuracy}} for quick comparisons."""
    return {
        method: {
            f"{test}/{task}": round(r["accuracy"], 4)
            for test, tasks in v["report"].items()
            for task, r in tasks.items()
        }
        for method, v in result["methods"].items()
    }
