"""The training recipe's parts: masked multi-task loss, MLM masking, parameter groups, and a
two-step run on a handful of sentences that must be reproducible from its seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from finsent.model.artifact import load_artifact
from finsent.model.data import IGNORE, Corpus, Example
from finsent.model.network import FinsentNetwork, NetworkConfig
from finsent.model.teacher import SoftTargets
from finsent.model.torch_infer import load_tokenizer
from finsent.model.train import (
    MaskedLanguageHead,
    TrainConfig,
    _masked_loss,
    _parameter_groups,
    _soft_loss,
    calibrate,
    fit_temperature,
    mask_tokens,
    train,
)


def test_masked_loss_ignores_missing_labels() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    labels = torch.tensor([0, IGNORE, 2])
    expected = nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(_masked_loss(logits, labels), expected)


def test_masked_loss_of_an_unlabelled_batch_is_zero_with_a_graph() -> None:
    logits = torch.randn(4, 20, requires_grad=True)
    loss = _masked_loss(logits, torch.full((4,), IGNORE))
    assert loss.item() == 0.0
    loss.backward()  # no NaN from an all-ignored cross-entropy
    assert torch.all(logits.grad == 0)


def test_mask_tokens_picks_only_real_tokens() -> None:
    tokenizer = load_tokenizer()
    batch = tokenizer(
        ["Acme Corp shares plunge after a profit warning"] * 50 + ["Oil rises"] * 50,
        padding=True,
        return_tensors="pt",
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    generator = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(ids, mask, tokenizer, 0.15, generator)
    chosen = labels != IGNORE
    special = torch.isin(ids, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id]))
    assert not (chosen & ((mask == 0) | special)).any()  # never padding, [CLS] or [SEP]
    assert torch.equal(labels[chosen], ids[chosen])  # the label is the original token
    assert torch.equal(masked[~chosen], ids[~chosen])  # everything else is untouched
    share = chosen.sum() / ((mask == 1) & ~special).sum()
    assert 0.10 < float(share) < 0.20
    replaced = (masked[chosen] == tokenizer.mask_token_id).float().mean()
    assert 0.7 < float(replaced) < 0.9  # 80% become [MASK]


def test_mlm_head_ties_the_decoder_to_the_embeddings() -> None:
    network = FinsentNetwork(NetworkConfig.tiny())
    head = MaskedLanguageHead(network.config, network.encoder.embeddings.word_embeddings)
    logits = head(torch.randn(7, network.config.hidden_size))
    assert logits.shape == (7, network.config.vocab_size)
    assert head.word_embeddings.weight is network.encoder.embeddings.word_embeddings.weight


def test_parameter_groups_skip_frozen_and_split_learning_rates() -> None:
    network = FinsentNetwork(NetworkConfig.tiny())
    network.freeze_embeddings()
    config = TrainConfig(encoder_lr=1e-5, head_lr=1e-3)
    groups = _parameter_groups(network, config)
    grouped = {id(p): g for g in groups for p in g["params"]}
    for name, parameter in network.named_parameters():
        if name.startswith("encoder.embeddings."):
            assert id(parameter) not in grouped
            continue
        group = grouped[id(parameter)]
        assert group["lr"] == (1e-5 if name.startswith("encoder.") else 1e-3)
        no_decay = name.endswith("bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if no_decay else config.weight_decay)


def test_layer_decay_lowers_each_encoder_layer_below_the_one_above() -> None:
    network = FinsentNetwork(NetworkConfig.tiny())  # 2 layers
    network.freeze_embeddings()
    config = TrainConfig(encoder_lr=1e-4, head_lr=1e-3, layer_decay=0.5)
    grouped = {id(p): g["lr"] for g in _parameter_groups(network, config) for p in g["params"]}
    rates = {name: grouped[id(p)] for name, p in network.named_parameters() if p.requires_grad}
    assert rates["encoder.encoder.layer.1.output.dense.weight"] == pytest.approx(1e-4)
    assert rates["encoder.encoder.layer.0.output.dense.weight"] == pytest.approx(0.5e-4)
    assert rates["sentiment_head.weight"] == rates["pooling.project.bias"] == 1e-3


def test_soft_loss_is_the_kl_divergence_plus_the_teachers_entropy() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 2.0]])
    targets = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    kl = nn.functional.kl_div(logits.log_softmax(-1), targets, reduction="batchmean")
    entropy = -(targets * targets.log()).sum(-1).mean()
    assert torch.allclose(_soft_loss(logits, targets), kl + entropy)
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(
        _soft_loss(logits, one_hot), nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    )


def test_temperature_undoes_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 2.0
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true_probs])
    sharpened = np.exp(logits * 2.5)  # the same ranking, 2.5 times too confident
    sharpened /= sharpened.sum(1, keepdims=True)
    assert fit_temperature(sharpened, labels) == pytest.approx(2.5, abs=0.2)
    assert fit_temperature(true_probs, labels) == pytest.approx(1.0, abs=0.1)


def test_calibration_is_folded_into_the_heads() -> None:
    torch.manual_seed(0)
    network = FinsentNetwork(
        NetworkConfig(**{**NetworkConfig.tiny().to_dict(), "vocab_size": 30522})
    ).eval()
    valid = [Example(f"headline number {i}", i % 3, i % 20, "t") for i in range(60)]
    with torch.no_grad():
        network.sentiment_head.weight.mul_(50.0)  # make it badly overconfident
    ids = torch.tensor([[101, 2034, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = network(ids, mask).sentiment_logits
    report = calibrate(network, valid, max_length=16)
    temperature = report["sentiment"]["temperature"]
    with torch.no_grad():
        after = network(ids, mask).sentiment_logits
    assert temperature > 1.0
    assert torch.allclose(after, before / temperature, atol=1e-5)
    assert report["sentiment"]["valid_ece_after"] <= report["sentiment"]["valid_ece_before"]


def tiny_corpus() -> Corpus:
    good = ["profit jumps at Acme", "Acme beats estimates", "record sales at Globex"]
    bad = ["Acme shares plunge", "Globex warns on profit", "losses mount at Initech"]
    flat = ["Acme to hold meeting", "Globex names new auditor", "Initech moves office"]
    train_rows = [Example(t, 2, 5, "t") for t in good] + [Example(t, 0, None, "t") for t in bad]
    train_rows += [Example(t, 1, 9, "t") for t in flat]
    test = [Example("Initech profit soars", 2, 5, "t"), Example("Acme stock sinks", 0, 19, "t")]
    return Corpus(train=train_rows, valid=train_rows[:4], tests={"tiny": test})


@pytest.mark.weights
@pytest.mark.slow
def test_training_is_reproducible_from_its_seed(tmp_path) -> None:
    config = TrainConfig(epochs=1, batch_size=4, evals_per_epoch=1, threads=1)
    first = train(tiny_corpus(), tmp_path / "a", config, progress=False)
    second = train(tiny_corpus(), tmp_path / "b", config, progress=False)
    meta_a = json.loads((tmp_path / "a" / "config.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert meta_a["weights_sha256"] == meta_b["weights_sha256"]
    assert first["test"] == second["test"]
    assert first["steps"] == 3 and set(first["test"]["tiny"]) == {"sentiment", "topic"}
    # The artifact is complete: it loads, and carries its card and metrics.
    artifact = load_artifact(tmp_path / "a")
    assert artifact.meta["training"]["config"]["seed"] == 0
    assert "Test results" in (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["steps"] == 3


@pytest.mark.weights
@pytest.mark.slow
def test_a_distilled_student_records_its_teachers(tmp_path) -> None:
    texts = ["Acme cuts jobs", "Globex wins contract", "Initech holds meeting", "Umbrella sued"]
    soft = SoftTargets(
        texts=texts,
        sentiment=np.tile(np.array([[0.8, 0.15, 0.05]], dtype=np.float32), (4, 1)),
        topic=np.full((4, 20), 0.05, dtype=np.float32),
        teachers=[{"name": "teacher-x", "encoder": {"upstream": "u/x"}, "fine_tune_seconds": 9}],
        seconds=3.0,
    )
    config = TrainConfig(epochs=1, batch_size=4, evals_per_epoch=1, threads=1)
    result = train(tiny_corpus(), tmp_path / "s", config, progress=False, soft=soft)
    assert result["steps"] == 4  # 9 gold and 4 pseudo-labelled examples, 4 a batch
    assert result["distillation"]["pseudo_labelled"] == 4
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    assert meta["training"]["teachers"][0]["name"] == "teacher-x"
    card = (tmp_path / "s" / "MODEL_CARD.md").read_text()
    assert "Distilled from teacher-x (u/x, 9 s)" in card
    assert "temperature-scaled" in card
