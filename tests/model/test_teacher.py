"""Teacher folders (save, load, checks) and the soft labels a student distils from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from finsent.model.network import FinsentNetwork, NetworkConfig
from finsent.model.teacher import (
    TeacherError,
    load_teacher,
    pseudo_label,
    save_teacher,
)

# The backbone's vocabulary size, since pseudo-labelling tokenizes with the real word pieces.
WIDE_TINY = NetworkConfig(**{**NetworkConfig.tiny().to_dict(), "vocab_size": 30522})
RESULT = {
    "test": {"tiny": {"sentiment": {"accuracy": 0.5, "n": 2}}},
    "fine_tune_seconds": 1.5,
}


def saved_teacher(tmp_path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    network = FinsentNetwork(WIDE_TINY)
    encoder = tmp_path / "encoder"
    encoder.mkdir(exist_ok=True)
    source = {"name": "tiny", "maven": "g:a:1", "jar_sha256": "ab" * 32}
    (encoder / "config.json").write_text(json.dumps({"finsent_source": source}))
    meta = {"name": f"teacher-{seed}", "max_length": 16, "backbone": {"sha256": "x"}}
    return save_teacher(network, tmp_path / f"t{seed}", meta, RESULT, encoder)


def test_a_saved_teacher_loads_to_the_same_network(tmp_path: Path) -> None:
    folder = saved_teacher(tmp_path, seed=1)
    torch.manual_seed(1)
    original = FinsentNetwork(WIDE_TINY).eval()
    teacher = load_teacher(folder)
    for name, value in original.state_dict().items():
        assert torch.equal(teacher.network.state_dict()[name], value), name
    identity = teacher.identity()
    assert identity["encoder"]["maven"] == "g:a:1"
    assert identity["test"] == {"tiny": {"sentiment": 0.5}}
    assert "backbone" not in teacher.meta  # a teacher is not the backbone's model


def test_a_changed_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    folder = saved_teacher(tmp_path, seed=1)
    with (folder / "teacher.safetensors").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(TeacherError, match="does not match the sha256"):
        load_teacher(folder)
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "config.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(TeacherError, match="not a teacher folder"):
        load_teacher(tmp_path / "artifact")
    with pytest.raises(TeacherError, match="not a teacher folder"):
        load_teacher(tmp_path / "nowhere")


@pytest.mark.weights  # the backbone's tokenizer
def test_soft_labels_are_the_teachers_mean_and_are_cached(tmp_path: Path) -> None:
    teachers = [load_teacher(saved_teacher(tmp_path, seed)) for seed in (1, 2)]
    texts = ["Acme shares plunge", "Globex beats estimates", "Initech names a new auditor"]
    soft = pseudo_label(teachers, texts, max_length=16, cache_dir=tmp_path / "cache")
    alone = [pseudo_label([t], texts, max_length=16) for t in teachers]
    np.testing.assert_allclose(soft.sentiment, (alone[0].sentiment + alone[1].sentiment) / 2)
    np.testing.assert_allclose(soft.topic, (alone[0].topic + alone[1].topic) / 2)
    assert soft.sentiment.shape == (3, 3) and soft.topic.shape == (3, WIDE_TINY.num_topics)
    np.testing.assert_allclose(soft.sentiment.sum(axis=1), 1.0, rtol=1e-5)
    assert [t["name"] for t in soft.teachers] == ["teacher-1", "teacher-2"]

    again = pseudo_label(teachers, texts, max_length=16, cache_dir=tmp_path / "cache")
    assert again.seconds == 0.0  # read back, not labelled again
    np.testing.assert_array_equal(again.sentiment, soft.sentiment)
    other = pseudo_label(teachers, texts[:2], max_length=16, cache_dir=tmp_path / "cache")
    assert other.sentiment.shape == (2, 3)  # another text list is another cache entry
