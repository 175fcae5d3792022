"""Saving and loading artifacts: only the non-frozen weights are stored, in fp16."""

from __future__ import annotations

import json

import pytest
import torch

from model.artifact import ArtifactError, backbone_fingerprint, load_artifact, save_artifact
from model.network import FinsentNetwork, NetworkConfig, backbone_dir


def test_missing_artifact_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="no model artifact"):
        load_artifact(tmp_path / "nowhere")


@pytest.mark.weights
def test_round_trip_stores_only_what_differs_from_the_backbone(tmp_path) -> None:
    torch.manual_seed(0)
    network = FinsentNetwork.from_backbone(backbone_dir(), NetworkConfig())
    with torch.no_grad():  # stand-in for fine-tuning: move the encoder off the backbone
        network.encoder.encoder.layer[0].output.dense.weight.add_(0.01)
    meta = {
        "name": "test-model",
        "labels": {"sentiment": ["negative", "neutral", "positive"], "topic": ["t"] * 20},
        "max_length": 32,
        "backbone": backbone_fingerprint(),
    }
    out = save_artifact(network, tmp_path / "a", meta, {"test": {}}, "# card\n")

    weights = (out / "weights.safetensors").stat().st_size
    assert weights < 25 * 1024 * 1024  # embeddings (half the model) are not stored
    saved = json.loads((out / "config.json").read_text())
    assert saved["version"].startswith("test-model+") and saved["format"] == 1
    assert (out / "MODEL_CARD.md").read_text() == "# card\n"

    loaded = load_artifact(out)
    assert not loaded.network.training
    original, restored = network.state_dict(), loaded.network.state_dict()
    for name, value in original.items():
        if name.startswith("encoder.embeddings."):
            assert torch.equal(restored[name], value)  # straight from the backbone
        else:  # fp16 storage: equal after the same rounding
            assert torch.equal(restored[name], value.half().float()), name


@pytest.mark.weights
def test_an_artifact_of_another_backbone_is_refused(tmp_path) -> None:
    network = FinsentNetwork.from_backbone(backbone_dir(), NetworkConfig())
    meta = {
        "name": "test-model",
        "labels": {"sentiment": [], "topic": []},
        "max_length": 32,
        "backbone": {"name": "other", "sha256": "0" * 64},
    }
    out = save_artifact(network, tmp_path / "a", meta, {}, "")
    with pytest.raises(ArtifactError, match="another backbone"):
        load_artifact(out)
