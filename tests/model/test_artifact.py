"""Saving and loading artifacts: what differs from the backbone, and the scoring graph; the
shipped artifact is small enough and documented."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from finsent.model.artifact import (
    ONNX_MODEL,
    SHIPPED_ARTIFACT,
    ArtifactError,
    export_scoring_graph,
    load_artifact,
    read_artifact,
    save_artifact,
)
from finsent.model.backbone import backbone_dir, backbone_fingerprint
from finsent.model.network import FinsentNetwork, NetworkConfig


def test_missing_artifact_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="no model artifact"):
        load_artifact(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="no model artifact"):
        read_artifact(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": 99}', "format 99"),
        ('["a list"]', "format None"),
        ('{"format": 2, "version": "x"}', "lacks 'max_length'"),
    ],
)
def test_a_bad_config_is_a_clear_error(tmp_path, config: str, error: str) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ArtifactError, match=error):
        read_artifact(tmp_path)


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

    size = sum(f.stat().st_size for f in out.iterdir())
    assert size <= 25 * 1024 * 1024  # the embeddings (half the model) are not stored
    saved = json.loads((out / "config.json").read_text())
    assert saved["version"].startswith("test-model+") and saved["format"] == 2
    assert saved["quantization"]["reduce_range"] is True
    assert (out / "MODEL_CARD.md").read_text() == "# card\n"
    assert read_artifact(out).version == saved["version"]  # no torch needed for this

    loaded = load_artifact(out)
    assert not loaded.network.training
    original, restored = network.state_dict(), loaded.network.state_dict()
    backbone = FinsentNetwork.from_backbone(backbone_dir(), NetworkConfig()).state_dict()
    for name, value in original.items():
        if name.startswith("encoder.embeddings."):
            assert torch.equal(restored[name], value)  # straight from the backbone
        elif value.dim() == 2 and name.startswith("encoder."):
            # an int8 difference from the backbone: off by at most half a step of its row
            step = (value - backbone[name]).abs().amax(dim=1, keepdim=True) / 127
            assert torch.all((restored[name] - value).abs() <= step / 2 + 1e-7), name
        else:  # fp16 storage: equal after the same rounding
            assert torch.equal(restored[name], value.half().float()), name


def _saved_artifact(folder):
    """A just-initialised network saved as an artifact (32 word pieces, placeholder topics)."""
    network = FinsentNetwork.from_backbone(backbone_dir(), NetworkConfig())
    meta = {
        "name": "test-model",
        "labels": {"sentiment": ["negative", "neutral", "positive"], "topic": ["t"] * 20},
        "max_length": 32,
        "backbone": backbone_fingerprint(),
    }
    return save_artifact(network, folder, meta, {}, "")


@pytest.mark.weights
def test_a_changed_scoring_graph_is_refused(tmp_path) -> None:
    out = _saved_artifact(tmp_path / "a")
    with (out / ONNX_MODEL).open("ab") as graph:
        graph.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match"):
        read_artifact(out)
    (out / ONNX_MODEL).unlink()
    with pytest.raises(ArtifactError, match="lacks its scoring graph"):
        read_artifact(out)


@pytest.mark.weights
def test_an_older_graph_is_exported_again_with_per_row_activations(tmp_path) -> None:
    """An artifact whose graph has one activation scale per tensor (exported before per-row
    scales) gets this version's graph from its own weights; its version stays."""
    from finsent.model.infer import BackboneText, OnnxPredictor
    from finsent.model.torch_infer import export_onnx

    out = _saved_artifact(tmp_path / "a")
    per_row_sha = json.loads((out / "config.json").read_text(encoding="utf-8"))["onnx_sha256"]
    older_graph = export_onnx(load_artifact(out).network, out, quantization={"activations": None})
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["onnx_sha256"] = hashlib.sha256(older_graph.read_bytes()).hexdigest()
    del config["quantization"]["activations"]
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    text = BackboneText(embeddings=False)
    older = OnnxPredictor(out / ONNX_MODEL, text, 32, threads=1, batch_invariant=True)
    assert not older.rows_are_independent

    # The export is deterministic: the same graph save_artifact wrote.
    assert export_scoring_graph(out) == per_row_sha
    info = read_artifact(out)
    assert info.meta["onnx_sha256"] == per_row_sha
    assert info.version == config["version"]
    assert info.meta["quantization"]["activations"] == "per-row"
    newer = OnnxPredictor(out / ONNX_MODEL, text, 32, threads=1, batch_invariant=True)
    assert newer.rows_are_independent


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


@pytest.mark.weights
def test_artifact_is_compact_and_documented() -> None:
    size = sum(f.stat().st_size for f in SHIPPED_ARTIFACT.iterdir())
    assert size <= 25 * 1024 * 1024, f"{size / 2**20:.1f} MB"
    card = (SHIPPED_ARTIFACT / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Test results" in card and "phrasebank-50agree" in card
    artifact = read_artifact()
    assert artifact.meta["training"]["data_sha256"]  # which data it was trained on
    assert artifact.sentiments == ["negative", "neutral", "positive"]
    assert len(artifact.topics) == 20


def test_all_threads_means_the_cores_this_process_may_use() -> None:
    """Pinned with taskset (or a container's cpuset) to fewer cores than the machine has, the
    default is those cores: more workers than them would only compete."""
    import os

    from finsent.model.artifact import set_threads

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert set_threads(0) == 1
        assert set_threads(3) == 3
    finally:
        os.sched_setaffinity(0, before)
    assert set_threads(0) == len(before)
