"""`finsent retrain`: fine-tune the running model on analysts' corrections, gate it, register it.

1. the corrections: every story's labels now (its latest correction per task), the newest
   ``holdout`` share held out by time for the gate
2. a candidate: the active model fine-tuned on the older corrections, each counted
   ``correction_weight`` times, beside a sample of the base training data whose targets are
   the active model's own probabilities (learning without forgetting: it learns what the
   analysts corrected and keeps its calls elsewhere)
3. the gate (``model.gate``): candidate and current model side by side, on the fixed test
   splits (minus any corrected text) and on the held-out corrections, both as the scorers run
   them (the int8 ONNX graph)
4. the registry: the candidate's artifact under ``<cache>/models/`` and its row with the gate
   report; promoted when it passes (unless auto-promotion is off)
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from finsent.core.errors import UserError
from finsent.core.settings import Settings
from finsent.core.vocabulary import SENTIMENTS
from finsent.model.artifact import (
    load_artifact,
    quiet_transformers,
    read_artifact,
    round_as_stored,
    save_artifact,
    set_threads,
)
from finsent.model.corrections import LabelledStory, labelled_stories, split_by_time
from finsent.model.data import IGNORE, Corpus, Example, length_buckets, text_key
from finsent.model.evaluate import corpus_report
from finsent.model.gate import GateDecision, GateRule, decide
from finsent.model.infer import make_predictor
from finsent.model.registry import ModelRegistry
from finsent.model.topics import TOPICS
from finsent.model.torch_infer import load_tokenizer
from finsent.model.train import (
    TrainConfig,
    _labels,
    _masked_loss,
    _parameter_groups,
    _Progress,
    _soft_loss,
    optimizer_step,
    pad_batch,
    seed_everything,
)
from finsent.runtime.store import Store
from finsent.runtime.store.labels import current_labels

log = logging.getLogger(__name__)


class RetrainError(UserError, RuntimeError):
    """Too few corrections to retrain on, or nothing to compare against."""


@dataclass(frozen=True)
class RetrainConfig:
    correction_weight: float = 8.0
    holdout: float = 0.2
    base_examples: int = 4000  # a seeded sample of the base training data, replayed
    epochs: float = 1.0  # passes over the sample and the weighted corrections
    encoder_lr: float = 3e-5
    batch_size: int = 32
    seed: int = 0
    threads: int = 0
    auto_promote: bool = True
    eval_limit: int | None = None  # the first N texts of each fixed split (quick runs)
    max_minutes: float | None = None  # fine-tuning budget; the gate still runs
    dropout: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetrainConfig:
        return replace(
            cls(
                correction_weight=settings.retrain_correction_weight,
                holdout=settings.retrain_holdout,
                base_examples=settings.retrain_base_examples,
                epochs=settings.retrain_epochs,
                encoder_lr=settings.retrain_lr,
                auto_promote=settings.retrain_auto_promote,
                threads=settings.model_threads,
            ),
            **overrides,
        )


@dataclass(frozen=True)
class RetrainResult:
    version: str
    parent: str
    decision: GateDecision
    promoted: bool
    trained_on: int  # corrections fine-tuned on
    held_out: int  # corrections the gate judged on
    seconds: dict[str, float]


def retrain(
    store: Store,
    registry: ModelRegistry,
    corpus: Corpus,
    config: RetrainConfig,
    rule: GateRule,
    *,
    now: datetime,
    by: str,
    progress: bool = True,
) -> RetrainResult:
    """Fine-tune a candidate from the active model, gate it against that model, register it,
    and promote it if it passed and ``config.auto_promote``."""
    clock = time.monotonic()
    seconds: dict[str, float] = {}
    stories = labelled_stories(current_labels(store.label_history()))
    if len(stories) < 2:
        raise RetrainError(
            f"retraining needs at least 2 corrected stories, and there are {len(stories)}: "
            "correct headlines on the dashboard or with `finsent labels add|import`"
        )
    train_stories, held_stories = split_by_time(stories, config.holdout)
    corrected = {text_key(s.text) for s in stories}
    fixed = {
        name: rows[: config.eval_limit] if config.eval_limit else rows
        for name, rows in _without(corpus.tests, corrected).items()
    }
    base = [e for e in corpus.train if text_key(e.text) not in corrected]
    if config.base_examples < len(base):
        base = random.Random(config.seed).sample(base, config.base_examples)
    active = registry.active()

    quiet_transformers()
    threads = set_threads(config.threads)
    with _Progress(progress) as bar:
        network, meta = _start_from(active.path)
        corrections = _weighted([s.example() for s in train_stories], config)
        steps = fine_tune(network, base, corrections, config, bar, int(meta["max_length"]))
        seconds["fine_tune"] = round(time.monotonic() - clock, 1)
        work = Path(tempfile.mkdtemp(prefix="candidate-", dir=_ensure(registry)))
        try:
            round_as_stored(network)
            training = {
                "parent": active.version,
                "config": asdict(config),
                "steps": steps,
                "base_examples": len(base),
                "anchored": True,
                "corrections_trained": len(train_stories),
                "corrections_held_out": len(held_stories),
                "torch": torch.__version__,
            }
            meta = {**meta, "training": training}
            save_artifact(network, work, meta, {"retrain": training}, _card(meta, training))
            seconds["saved"] = round(time.monotonic() - clock, 1)
            decision = _gate(active.path, work, fixed, held_stories, rule, threads, bar)
            seconds["gated"] = round(time.monotonic() - clock, 1)
            report = {
                **decision.report(),
                "corrections": {"trained": len(train_stories), "held_out": len(held_stories)},
                "seconds": seconds,
            }
            version = registry.register(
                work,
                parent=active.version,
                corrections=len(train_stories),
                status="passed" if decision.passed else "refused",
                report=report,
                now=now,
            )
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    promoted = False
    if decision.passed and config.auto_promote and version != active.version:
        registry.promote(version, by=by, reason="passed the retrain gate", now=now)
        promoted = True
    seconds["total"] = round(time.monotonic() - clock, 1)
    return RetrainResult(
        version=version,
        parent=active.version,
        decision=decision,
        promoted=promoted,
        trained_on=len(train_stories),
        held_out=len(held_stories),
        seconds=seconds,
    )


def _ensure(registry: ModelRegistry) -> Path:
    registry.config.models_dir.mkdir(parents=True, exist_ok=True)
    return registry.config.models_dir


def _without(tests: dict[str, list[Example]], keys: set[str]) -> dict[str, list[Example]]:
    """The fixed splits minus every corrected text: a correction is the analysts' label, and
    the gate judges corrections on the held-out ones alone."""
    return {name: [e for e in rows if text_key(e.text) not in keys] for name, rows in tests.items()}


def _weighted(examples: Sequence[Example], config: RetrainConfig) -> list[Example]:
    """Each correction ``correction_weight`` times (the fraction by a seeded draw)."""
    rng = random.Random(config.seed)
    whole, part = divmod(config.correction_weight, 1.0)
    out: list[Example] = []
    for example in examples:
        out.extend([example] * (int(whole) + (rng.random() < part)))
    return out


def _start_from(path: Path) -> tuple[Any, dict[str, Any]]:
    """The active model's torch network, and the parts of its config a candidate keeps."""
    artifact = load_artifact(path)
    network = artifact.network
    network.freeze_embeddings()
    keep = ("name", "labels", "max_length", "backbone")
    return network, {k: artifact.meta[k] for k in keep}


def fine_tune(
    network: Any,
    base: Sequence[Example],
    corrections: Sequence[Example],
    config: RetrainConfig,
    bar: Any,
    max_length: int,
) -> int:
    """AdamW with linear warm-up and decay over the base sample and the corrections; steps.

    Learning without forgetting: on the base sample the targets are the starting model's own
    probabilities, not the dataset's labels, so the candidate keeps the current model's calls
    wherever no correction pulls it elsewhere, and the fixed test splits barely move. On the
    corrections the targets are the analysts' labels.
    """
    seed_everything(config.seed)
    tokenizer = load_tokenizer()
    examples = [*base, *corrections]
    encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)[
        "input_ids"
    ]
    lengths = [len(ids) for ids in encoded]

    def batch_tensors(batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch(encoded, batch, tokenizer.pad_token_id)

    # The starting model's probabilities on the base sample: the anchor (eval mode, once).
    anchored = torch.zeros(len(examples), dtype=torch.bool)
    anchored[: len(base)] = True
    soft_sentiment = torch.zeros((len(examples), len(SENTIMENTS)))
    soft_topic = torch.zeros((len(examples), len(TOPICS)))
    network.eval()
    task = bar.task("anchoring to the running model", -(-len(base) // 64))
    with torch.no_grad():
        for batch in length_buckets(lengths[: len(base)], 64, seed=None):
            out = network(*batch_tensors(batch))
            soft_sentiment[batch] = out.sentiment_logits.softmax(-1)
            soft_topic[batch] = out.topic_logits.softmax(-1)
            bar.advance(task)
    sentiment = _labels(examples, "sentiment")
    topic = _labels(examples, "topic")
    sentiment[: len(base)] = IGNORE  # base rows learn from the anchor, not their labels
    topic[: len(base)] = IGNORE

    per_epoch = -(-len(examples) // config.batch_size)
    total = max(1, round(per_epoch * config.epochs))
    from transformers import get_linear_schedule_with_warmup

    groups = _parameter_groups(
        network, TrainConfig(encoder_lr=config.encoder_lr, head_lr=config.encoder_lr * 10)
    )
    optimizer = torch.optim.AdamW(groups)
    schedule = get_linear_schedule_with_warmup(optimizer, int(total * 0.06), total)
    # Dropout off: the anchor's targets are the model's own outputs, so on the base sample the
    # loss starts at its minimum and only pulls back what the corrections move. With dropout,
    # matching eval-mode outputs in train mode is itself a drift (a point of PhraseBank
    # validation macro-F1 with no correction at all, measured).
    network.train(config.dropout)
    task = bar.task("fine-tuning on corrections", total)
    started, step, epoch = time.monotonic(), 0, 0
    while step < total:
        for batch in length_buckets(lengths, config.batch_size, seed=config.seed + epoch):
            out = network(*batch_tensors(batch))
            loss = _masked_loss(out.sentiment_logits, sentiment[batch])
            loss = loss + _masked_loss(out.topic_logits, topic[batch])
            anchor = anchored[batch]
            if bool(anchor.any()):
                loss = loss + _soft_loss(
                    out.sentiment_logits[anchor], soft_sentiment[batch][anchor]
                )
                loss = loss + _soft_loss(out.topic_logits[anchor], soft_topic[batch][anchor])
            optimizer_step(loss, network.parameters(), optimizer, schedule)
            step += 1
            bar.advance(task, f"loss {loss.item():.3f}")
            over_budget = (
                config.max_minutes and time.monotonic() - started > config.max_minutes * 60
            )
            if step >= total or over_budget:
                network.eval()
                return step
        epoch += 1
    network.eval()
    return step


def _gate(
    current_path: Path,
    candidate_path: Path,
    fixed: dict[str, list[Example]],
    held: Sequence[LabelledStory],
    rule: GateRule,
    threads: int,
    bar: Any,
) -> GateDecision:
    """Both models as the scorers run them, on the same texts."""
    reports, held_scores = [], []
    task = bar.task("gate: current and candidate", 2)
    for path in (current_path, candidate_path):
        predictor = make_predictor(read_artifact(path), "onnx-int8", threads, batch_size=64)
        reports.append(corpus_report(predictor, Corpus(train=[], valid=[], tests=fixed)))
        held_scores.append(_held_out_accuracy(predictor, held))
        bar.advance(task)
    (before, n), (after, _) = held_scores
    return decide(reports[0], reports[1], (before, after, n), rule)


def _held_out_accuracy(predictor: Any, held: Sequence[LabelledStory]) -> tuple[float, int]:
    """Share of the held-out labels (sentiment and topic alike) the model gets right."""
    if not held:
        return 0.0, 0
    predictions = predictor.predict([s.text for s in held], explain=False)
    right = total = 0
    for i, story in enumerate(held):
        if story.sentiment is not None:
            total += 1
            right += SENTIMENTS[int(predictions.sentiment[i])] == story.sentiment
        if story.topic is not None:
            total += 1
            right += TOPICS[int(predictions.topic[i])] == story.topic
    return (right / total if total else 0.0), total


def _card(meta: dict[str, Any], training: dict[str, Any]) -> str:
    return f"""# Model card: {meta["name"]}, retrained

Fine-tuned by `finsent retrain` from **{training["parent"]}** on a sample of
{training["base_examples"]:,} base training examples (whose targets were the parent's own
probabilities, so its calls elsewhere stay put) plus {training["corrections_trained"]} analysts' corrections (each
counted {training["config"]["correction_weight"]} times), {training["steps"]} steps at encoder
learning rate {training["config"]["encoder_lr"]}. The newest {training["corrections_held_out"]}
corrections were held out for the promotion gate; its figures are in the model registry
(`finsent model list`). Otherwise as the parent's model card: same network, labels and limits.
"""
