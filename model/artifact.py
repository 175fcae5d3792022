"""The saved model: config, weights that differ from the backbone, label maps, metrics, card.

Layout of an artifact folder:
    config.json          network config, labels, tokenizer length, backbone identity, training
    weights.safetensors  encoder layers + pooling + heads in fp16 (the embeddings stay the
                         backbone's, so they are not stored)
    metrics.json         validation and test metrics from `finsent train`
    MODEL_CARD.md        what it is, what it was trained on, how well it does, its limits
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.network import FinsentNetwork, NetworkConfig, backbone_dir

FORMAT = 1
WEIGHTS = "weights.safetensors"
SHIPPED_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "finsent-attn"


class ArtifactError(RuntimeError):
    """An artifact is missing, from another format, or was trained on another backbone."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    network: FinsentNetwork  # eval mode, fp32
    meta: dict[str, Any]  # config.json

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @property
    def sentiments(self) -> list[str]:
        return list(self.meta["labels"]["sentiment"])

    @property
    def topics(self) -> list[str]:
        return list(self.meta["labels"]["topic"])


def backbone_fingerprint(path: Path | None = None) -> dict[str, str]:
    path = path or backbone_dir()
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    return {"name": "sentence-transformers/all-MiniLM-L6-v2", "sha256": digest}


def save_artifact(
    network: FinsentNetwork,
    out_dir: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    card: str,
) -> Path:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    frozen = network.frozen_prefixes()
    tensors = {
        name: (value.half() if value.is_floating_point() else value).contiguous()
        for name, value in network.state_dict().items()
        if not name.startswith(frozen)
    }
    save_file(tensors, str(out_dir / WEIGHTS))
    weights_sha = hashlib.sha256((out_dir / WEIGHTS).read_bytes()).hexdigest()
    full_meta = {
        "format": FORMAT,
        **meta,
        "network": network.config.to_dict(),
        "frozen_from_backbone": list(frozen),
        "weights_sha256": weights_sha,
        "version": f"{meta['name']}+{weights_sha[:8]}",
    }
    (out_dir / "config.json").write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return out_dir


def load_artifact(path: Path | None = None) -> Artifact:
    """Rebuild the network: backbone embeddings from the installed package + stored weights."""
    from safetensors.torch import load_file

    quiet_transformers()
    path = Path(path or SHIPPED_ARTIFACT)
    config_file = path / "config.json"
    if not config_file.exists():
        raise ArtifactError(f"no model artifact at {path} (config.json missing)")
    meta = json.loads(config_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"artifact format {meta.get('format')!r} is not {FORMAT}")
    expected = meta["backbone"]["sha256"]
    if backbone_fingerprint()["sha256"] != expected:
        raise ArtifactError(
            f"artifact {path.name} was trained on another backbone build (sha256 {expected[:12]})"
        )
    network = FinsentNetwork.from_backbone(backbone_dir(), NetworkConfig(**meta["network"]))
    stored = {name: value.float() for name, value in load_file(str(path / WEIGHTS)).items()}
    missing, unexpected = network.load_state_dict(stored, strict=False)
    frozen = tuple(meta["frozen_from_backbone"])
    not_frozen = [name for name in missing if not name.startswith(frozen)]
    if not_frozen or unexpected:
        raise ArtifactError(f"weights do not fit the network: {(not_frozen + unexpected)[:5]}")
    network.eval()
    return Artifact(path=path, network=network, meta=meta)


def quiet_transformers() -> None:
    """transformers prints load reports and hub hints; none apply to offline, known weights."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: all cores) and one inter-op thread.

    Small batches gain nothing from more threads than cores, and oversubscription with the
    Kafka client threads costs latency.
    """
    import os

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads
