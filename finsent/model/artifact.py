"""The saved model: config, weights that differ from the backbone, the ONNX graph, metrics, card.

Layout of an artifact folder (format 2):
    config.json          network config, labels, tokenizer length, backbone identity, training
    model-int8.onnx      the network for scoring, int8 weights (ONNX Runtime; no torch needed).
                         Input: word vectors from the backbone's table, so that table (half the
                         model) is not stored
    weights.safetensors  the trained network for torch (reference scoring, further training):
                         each encoder matrix as its int8 difference from the backbone, with one
                         scale per row; biases, norms, pooling and heads in fp16
    metrics.json         validation and test metrics from `finsent train`
    MODEL_CARD.md        what it is, what it was trained on, how well it does, its limits

Reading an artifact for scoring (`read_artifact`) needs neither torch nor transformers;
rebuilding the torch network (`load_artifact`) and writing one (`save_artifact`) need the
`train` extra.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsent.core.errors import UserError
from finsent.core.vocabulary import SENTIMENTS, Sentiment
from finsent.model.backbone import backbone_dir, backbone_fingerprint

if TYPE_CHECKING:
    from finsent.model.network import FinsentNetwork

FORMAT = 2
READABLE_FORMATS = (1, 2)  # load_artifact still rebuilds format-1 (fp16) networks
WEIGHTS = "weights.safetensors"
ONNX_MODEL = "model-int8.onnx"
DELTA, SCALE = ".delta_int8", ".delta_scale"
SHIPPED_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "finsent-attn"


class ArtifactError(UserError, RuntimeError):
    """An artifact is missing, from another format, or was trained on another backbone."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What scoring needs of an artifact: its folder and config.json."""

    path: Path
    meta: dict[str, Any]  # config.json

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @property
    def sentiments(self) -> list[Sentiment]:
        return list(self.meta["labels"]["sentiment"])  # each checked by read_artifact

    @property
    def topics(self) -> list[str]:
        return list(self.meta["labels"]["topic"])


@dataclass(frozen=True)
class Artifact(ArtifactInfo):
    network: FinsentNetwork  # eval mode, fp32


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_artifact(path: Path | None = None, formats: tuple[int, ...] = (FORMAT,)) -> ArtifactInfo:
    """Check an artifact's config, its backbone and its ONNX graph; no torch."""
    path = Path(path or SHIPPED_ARTIFACT)
    config_file = path / "config.json"
    if not config_file.exists():
        raise ArtifactError(f"no model artifact at {path} (config.json missing)")
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") not in formats:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ArtifactError(
            f"artifact {path} has format {found!r}; this finsent reads format "
            f"{' or '.join(map(str, formats))} (re-save it with `finsent train`)"
        )
    for key in ("version", "max_length", "labels", "backbone"):
        if key not in meta:
            raise ArtifactError(f"artifact {path}: config.json lacks {key!r}")
    unknown = set(meta["labels"].get("sentiment", ())) - set(SENTIMENTS)
    if unknown:  # scored records carry these labels, so they must be the shared vocabulary
        raise ArtifactError(f"artifact {path}: unknown sentiment labels {sorted(unknown)}")
    expected = meta["backbone"].get("sha256", "")
    if backbone_fingerprint()["sha256"] != expected:
        raise ArtifactError(
            f"artifact {path.name} was trained on another backbone build (sha256 {expected[:12]})"
        )
    if meta["format"] >= 2:
        onnx = path / ONNX_MODEL
        if not onnx.exists():
            raise ArtifactError(f"artifact {path} lacks its scoring graph {ONNX_MODEL}")
        if _sha256(onnx) != meta.get("onnx_sha256"):
            raise ArtifactError(f"{onnx} does not match the sha256 in its config.json")
    return ArtifactInfo(path=path, meta=meta)


def save_artifact(
    network: FinsentNetwork,
    out_dir: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    card: str,
) -> Path:
    """Write weights, the int8 ONNX graph and the config; returns `out_dir`."""
    from safetensors.torch import save_file

    from finsent.model.torch_infer import QUANTIZATION, export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    network = network.eval()
    frozen = network.frozen_prefixes()
    save_file(_stored_tensors(network, _backbone_state()), str(out_dir / WEIGHTS))
    # The ONNX graph is exported from exactly what the weights file rebuilds, so torch-fp32
    # and onnx-int8 differ by the int8 of the graph alone.
    rebuilt = _rebuild(network.config, out_dir / WEIGHTS, frozen)
    onnx = export_onnx(rebuilt, out_dir, max_length=int(meta["max_length"]))
    weights_sha = _sha256(out_dir / WEIGHTS)
    full_meta = {
        "format": FORMAT,
        **{k: v for k, v in meta.items() if k not in ("format", "version")},
        "network": network.config.to_dict(),
        "frozen_from_backbone": list(frozen),
        "weights_sha256": weights_sha,
        "onnx_sha256": _sha256(onnx),
        "quantization": QUANTIZATION,
        "version": f"{meta['name']}+{weights_sha[:8]}",
    }
    (out_dir / "config.json").write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return out_dir


def export_scoring_graph(path: Path) -> str:
    """Export an artifact's scoring graph again from its weights, with this version's
    quantization (`torch_infer.QUANTIZATION`); returns the new graph's sha256.

    The weights, and so the version, stay as they are; config.json records the graph's new
    checksum and quantization.
    """
    from finsent.model.torch_infer import QUANTIZATION, export_onnx

    artifact = load_artifact(path)
    onnx = export_onnx(artifact.network, artifact.path, max_length=artifact.max_length)
    meta = {**artifact.meta, "onnx_sha256": _sha256(onnx), "quantization": QUANTIZATION}
    config = artifact.path / "config.json"
    config.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta["onnx_sha256"]


def _backbone_state() -> dict[str, Any]:
    """The backbone's tensors under the network's names (its BertModel is `encoder`)."""
    from safetensors.torch import load_file

    stored = load_file(str(backbone_dir() / "model.safetensors"))
    return {f"encoder.{name}": value for name, value in stored.items()}


def _stored_tensors(network: FinsentNetwork, backbone: dict[str, Any]) -> dict[str, Any]:
    """What weights.safetensors holds for `network`: every tensor that is not frozen."""
    import torch

    tensors = {}
    for name, value in network.state_dict().items():
        if name.startswith(network.frozen_prefixes()):
            continue
        base = backbone.get(name)
        if base is not None and value.dim() == 2 and value.is_floating_point():
            # W = W_backbone + q · s per row: the fine-tuning difference is small, so 8 bits of
            # it lose far less than 8 bits (or 16) of the weight itself.
            delta = value.detach().float() - base.float()
            scale = delta.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            quantized = (delta / scale[:, None]).round().clamp(-127, 127)
            tensors[name + DELTA] = quantized.to(torch.int8).contiguous()
            tensors[name + SCALE] = scale.contiguous()
        else:
            value = value.detach()
            tensors[name] = (value.half() if value.is_floating_point() else value).contiguous()
    return tensors


def _apply_stored(current: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The state dict that `stored` tensors rebuild over the backbone's `current` ones."""
    state = {}
    for name, value in stored.items():
        if name.endswith(SCALE):
            continue
        if name.endswith(DELTA):
            base_name = name[: -len(DELTA)]
            state[base_name] = (
                current[base_name] + value.float() * stored[base_name + SCALE][:, None]
            )
        else:
            state[name] = value.float() if value.is_floating_point() else value
    return state


def round_as_stored(network: FinsentNetwork) -> None:
    """Give `network` exactly the weights its artifact would rebuild (for honest test figures)."""
    import torch

    backbone = _backbone_state()
    state = _apply_stored(backbone, _stored_tensors(network, backbone))
    with torch.no_grad():
        network.load_state_dict(state, strict=False)


def _rebuild(config, weights: Path, frozen: tuple[str, ...]) -> FinsentNetwork:
    """The backbone, then the stored weights over it (deltas added, the rest replaced)."""
    from safetensors.torch import load_file

    from finsent.model.network import FinsentNetwork

    network = FinsentNetwork.from_backbone(backbone_dir(), config)
    state = _apply_stored(network.state_dict(), load_file(str(weights)))
    missing, unexpected = network.load_state_dict(state, strict=False)
    not_frozen = [name for name in missing if not name.startswith(frozen)]
    if not_frozen or unexpected:
        raise ArtifactError(f"weights do not fit the network: {(not_frozen + unexpected)[:5]}")
    return network.eval()


def load_artifact(path: Path | None = None) -> Artifact:
    """Rebuild the torch network: backbone weights from the installed package + stored weights."""
    from finsent.model.network import NetworkConfig

    quiet_transformers()
    info = read_artifact(path, formats=READABLE_FORMATS)
    meta = info.meta
    config = NetworkConfig(**meta["network"])
    network = _rebuild(config, info.path / WEIGHTS, tuple(meta["frozen_from_backbone"]))
    return Artifact(path=info.path, meta=meta, network=network)


def quiet_transformers() -> None:
    """transformers prints load reports and hub hints; none apply to offline, known weights."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: every core this process may use) and, where torch is loaded, tell it too.

    Small batches gain nothing from more threads than cores, and oversubscription with the
    Kafka client threads costs latency.
    """
    import os
    import sys

    # The cores this process may run on (taskset, a container's cpuset), not the machine's.
    threads = threads or len(os.sched_getaffinity(0)) or 1
    torch = sys.modules.get("torch")  # only where something else loaded it
    if torch is not None:
        torch.set_num_threads(threads)
    return threads
