"""Teachers: bigger fine-tuned encoders whose soft labels the shipped student learns from.

A teacher folder holds the whole network in fp32 (`teacher.safetensors`, about 130 MB for a
12-layer, 384-wide encoder), its `config.json` (network shape, the encoder it started from
with its Maven coordinate and checksum, labels, training) and `metrics.json`. Teachers are
never served and never committed; `finsent train --teacher DIR` reads them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsent.core.errors import UserError
from finsent.model.data import file_sha256

if TYPE_CHECKING:  # torch: only where a teacher is built, so the CLI imports this freely
    from finsent.model.data import Corpus
    from finsent.model.network import FinsentNetwork
    from finsent.model.train import TrainConfig

WEIGHTS = "teacher.safetensors"


class TeacherError(UserError, RuntimeError):
    """A folder that is not a saved teacher."""


@dataclass(frozen=True)
class Teacher:
    path: Path
    meta: dict[str, Any]
    network: FinsentNetwork  # eval mode

    def identity(self) -> dict[str, Any]:
        """What a student's config.json records of the teacher it learnt from."""
        return {
            "name": self.meta["name"],
            "encoder": self.meta["encoder"],
            "weights_sha256": self.meta["weights_sha256"],
            "test": {
                split: {task: round(m["accuracy"], 4) for task, m in tasks.items()}
                for split, tasks in self.meta.get("test", {}).items()
            },
            "fine_tune_seconds": self.meta.get("fine_tune_seconds"),
        }


def save_teacher(
    network: FinsentNetwork,
    out_dir: Path,
    meta: dict[str, Any],
    result: dict[str, Any],
    encoder_folder: Path,
) -> Path:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in network.eval().state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS))
    encoder = json.loads((encoder_folder / "config.json").read_text(encoding="utf-8"))
    full = {
        **{k: v for k, v in meta.items() if k != "backbone"},
        "kind": "teacher",
        "network": network.config.to_dict(),
        "encoder": encoder.get("finsent_source", {}),
        "weights_sha256": file_sha256(out_dir / WEIGHTS),
        "test": result["test"],
        "fine_tune_seconds": result["fine_tune_seconds"],
    }
    (out_dir / "config.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return out_dir


def read_teacher_meta(path: Path) -> dict[str, Any]:
    """A teacher folder's config.json, checked to be one (cheap: no weights, no torch)."""
    try:
        meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TeacherError(f"{path} is not a teacher folder: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("kind") != "teacher":
        raise TeacherError(f"{path} is not a teacher folder (train one with --encoder)")
    return meta


def load_teacher(path: Path) -> Teacher:
    from safetensors.torch import load_file

    from finsent.model.network import FinsentNetwork, NetworkConfig

    meta = read_teacher_meta(path)
    weights = path / WEIGHTS
    if file_sha256(weights) != meta.get("weights_sha256"):
        raise TeacherError(f"{weights} does not match the sha256 in its config.json")
    network = FinsentNetwork(NetworkConfig(**meta["network"]))
    network.load_state_dict(load_file(str(weights)))
    return Teacher(path=path, meta=meta, network=network.eval())


@dataclass(frozen=True)
class SoftTargets:
    """The teachers' mean probabilities for unlabelled texts: what a student distils."""

    texts: list[str]
    sentiment: Any  # (N, 3) float32, in SENTIMENTS order
    topic: Any  # (N, num_topics) float32, in TOPICS order
    teachers: list[dict[str, Any]]  # Teacher.identity() of each
    seconds: float  # wall time of the labelling (0 when read from the cache)


def pseudo_label(
    teachers: list[Teacher], texts: list[str], max_length: int, cache_dir: Path | None = None
) -> SoftTargets:
    """Soft labels from the mean of the teachers' probabilities (fp32, batched: a teacher
    need not be batch-invariant). Cached per teacher set and text list, since labelling is
    the slow half of distillation."""
    import time

    import numpy as np

    from finsent.model.infer import BackboneText
    from finsent.model.torch_infer import TorchPredictor

    key = hashlib.sha256(
        json.dumps([[t.meta["weights_sha256"] for t in teachers], max_length, texts]).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"pseudo-{key}.npz" if cache_dir else None
    identities = [t.identity() for t in teachers]
    if cached is not None and cached.exists():
        with np.load(cached) as stored:
            return SoftTargets(texts, stored["sentiment"], stored["topic"], identities, 0.0)
    started = time.monotonic()
    text = BackboneText(embeddings=False)
    sentiment, topic = [], []
    for teacher in teachers:
        predictions = TorchPredictor(teacher.network, text, max_length).predict(
            texts, explain=False
        )
        sentiment.append(predictions.sentiment_probs)
        topic.append(predictions.topic_probs)
    soft = SoftTargets(
        texts,
        np.mean(sentiment, axis=0).astype(np.float32),
        np.mean(topic, axis=0).astype(np.float32),
        identities,
        round(time.monotonic() - started, 1),
    )
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, sentiment=soft.sentiment, topic=soft.topic)
    return soft


def distillation_targets(
    teacher_dirs: list[Path],
    corpus: Corpus,
    datasets_root: Path,
    config: TrainConfig,
    cache_dir: Path | None,
) -> SoftTargets:
    """The teachers' soft labels for a seeded sample of the unlabelled headlines, with no
    test text among them."""
    import random

    from finsent.model.data import DataError, unlabelled_headlines

    teachers = [load_teacher(path) for path in teacher_dirs]
    exclude = [e.text for rows in corpus.tests.values() for e in rows]
    texts = unlabelled_headlines(datasets_root, exclude, config.hold_out_sources)
    if not texts:
        raise DataError(f"no unlabelled headlines under {datasets_root} to distil on")
    if len(texts) > config.pseudo_limit:
        texts = random.Random(config.seed).sample(texts, config.pseudo_limit)
    return pseudo_label(teachers, texts, config.max_length, cache_dir)
