"""The attention network on a tiny random config: shapes, α masking, padding invariance."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from finsent.model.network import (  # noqa: E402
    AttentionPooling,
    FinsentNetwork,
    NetworkConfig,
    NetworkOutput,
    sentiment_score,
)

ATOL = 1e-5
PAD = 0


@pytest.fixture(scope="module")
def net() -> FinsentNetwork:
    torch.manual_seed(0)
    return FinsentNetwork(NetworkConfig.tiny()).eval()


def ids(*lengths: int, seed: int = 1) -> list[torch.Tensor]:
    """Random token rows (ids 1..99, so never the pad id) of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 100, (n,), generator=g) for n in lengths]


def pad(rows: list[torch.Tensor], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    length = length or max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return input_ids, mask


def run(net: FinsentNetwork, input_ids: torch.Tensor, mask: torch.Tensor) -> NetworkOutput:
    with torch.no_grad():
        return net(input_ids, mask)


def test_tiny_config() -> None:
    config = NetworkConfig.tiny()
    assert (config.hidden_size, config.num_layers, config.vocab_size) == (32, 2, 100)
    assert config.to_dict()["num_topics"] == 20


def test_output_shapes(net: FinsentNetwork) -> None:
    out = run(net, *pad(ids(5, 3, 7, 1)))
    assert out.sentiment_logits.shape == (4, 3)
    assert out.topic_logits.shape == (4, 20)
    assert out.attention.shape == (4, 7)
    assert out.pooled.shape == (4, 32)
    assert out.sentiment_probs.shape == (4, 3)
    assert out.topic_probs.shape == (4, 20)
    assert out.score.shape == (4,)


def test_alpha_sums_to_one_and_is_zero_on_padding(net: FinsentNetwork) -> None:
    input_ids, mask = pad(ids(5, 3, 7, 1), length=9)
    alpha = run(net, input_ids, mask).attention
    real = mask.bool()
    assert torch.allclose((alpha * real).sum(-1), torch.ones(4), atol=ATOL)
    assert torch.all(alpha[~real] == 0)
    assert torch.all(alpha[real] > 0)


def test_padding_does_not_change_results(net: FinsentNetwork) -> None:
    rows = ids(6, 6, 6, seed=2)
    tight = run(net, *pad(rows))
    loose = run(net, *pad(rows, length=11))
    torch.testing.assert_close(loose.sentiment_probs, tight.sentiment_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(loose.topic_probs, tight.topic_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(loose.score, tight.score, atol=ATOL, rtol=0)
    torch.testing.assert_close(loose.pooled, tight.pooled, atol=ATOL, rtol=0)
    torch.testing.assert_close(loose.attention[:, :6], tight.attention, atol=ATOL, rtol=0)
    assert torch.all(loose.attention[:, 6:] == 0)


def test_row_alone_matches_row_in_batch_with_longer_row(net: FinsentNetwork) -> None:
    short, long = ids(4, 9, seed=3)
    alone = run(net, *pad([short]))
    batch = run(net, *pad([short, long]))
    torch.testing.assert_close(
        batch.sentiment_probs[0], alone.sentiment_probs[0], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(batch.topic_probs[0], alone.topic_probs[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(batch.score[0], alone.score[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(batch.attention[0, :4], alone.attention[0], atol=ATOL, rtol=0)
    assert torch.all(batch.attention[0, 4:] == 0)


def test_score_is_p_pos_minus_p_neg(net: FinsentNetwork) -> None:
    out = run(net, *pad(ids(5, 2, 8, seed=4)))
    probs = out.sentiment_probs
    torch.testing.assert_close(out.score, probs[:, 2] - probs[:, 0])
    assert torch.all(out.score.abs() <= 1)
    # Extreme logits still land in [-1, 1].
    extreme = NetworkOutput(
        sentiment_logits=torch.tensor([[-50.0, 0.0, 50.0], [50.0, 0.0, -50.0], [0.0, 50.0, 0.0]]),
        topic_logits=torch.zeros(3, 20),
        attention=torch.ones(3, 1),
        pooled=torch.zeros(3, 32),
    )
    torch.testing.assert_close(extreme.score, torch.tensor([1.0, -1.0, 0.0]))
    assert sentiment_score(torch.tensor([0.2, 0.3, 0.5])).item() == pytest.approx(0.3)


def test_freeze_embeddings_freezes_exactly_the_embeddings() -> None:
    torch.manual_seed(0)
    network = FinsentNetwork(NetworkConfig.tiny())
    assert all(p.requires_grad for p in network.parameters())
    network.freeze_embeddings()
    frozen = {n for n, p in network.named_parameters() if not p.requires_grad}
    embeddings = {n for n, _ in network.named_parameters() if n.startswith("encoder.embeddings.")}
    assert embeddings  # word, position, token-type embeddings and their LayerNorm
    assert frozen == embeddings
    # Gradients still reach everything else.
    input_ids, mask = pad(ids(3, 5, seed=5))
    out = network(input_ids, mask)
    (out.sentiment_logits.sum() + out.topic_logits.sum()).backward()
    for name, p in network.named_parameters():
        if name in frozen:
            assert p.grad is None
    assert network.pooling.project.weight.grad is not None
    assert network.encoder.encoder.layer[0].attention.self.query.weight.grad is not None


def manual_pooling(
    pooling: AttentionPooling, states: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """z = w·tanh(Wx+b)+b_att by hand, then softmax over the real positions only."""
    W, b = pooling.project.weight, pooling.project.bias
    w, b_att = pooling.score.weight[0], pooling.score.bias[0]
    alpha = torch.zeros(mask.shape)
    pooled = torch.zeros(states.shape[0], states.shape[2])
    for i in range(states.shape[0]):
        real = mask[i].bool()
        z = torch.tanh(states[i][real] @ W.T + b) @ w + b_att
        e = torch.exp(z - z.max())
        alpha[i, real] = e / e.sum()
        pooled[i] = alpha[i] @ states[i]
    return pooled, alpha


def test_attention_pooling_matches_manual_softmax() -> None:
    torch.manual_seed(0)
    pooling = AttentionPooling(hidden_size=4, attention_hidden=3).eval()
    states = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 0, 0, 1, 0]])
    with torch.no_grad():
        pooled, alpha = pooling(states, mask)
        want_pooled, want_alpha = manual_pooling(pooling, states, mask)
    torch.testing.assert_close(alpha, want_alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled, want_pooled, atol=1e-6, rtol=0)
    assert alpha[2].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]  # one real token takes all
    torch.testing.assert_close(pooled[2], states[2, 3])
    # Changing padded states changes nothing.
    noisy = states.clone()
    noisy[mask == 0] = 1e3
    with torch.no_grad():
        _, noisy_alpha = pooling(noisy, mask)
    torch.testing.assert_close(noisy_alpha, alpha, atol=1e-6, rtol=0)


@st.composite
def pooling_inputs(draw: st.DrawFn) -> tuple[int, torch.Tensor, torch.Tensor]:
    batch = draw(st.integers(1, 5))
    length = draw(st.integers(1, 12))
    rows = [
        draw(st.lists(st.booleans(), min_size=length, max_size=length).filter(any))
        for _ in range(batch)
    ]
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    states = torch.randn(batch, length, 8, generator=torch.Generator().manual_seed(seed)) * scale
    return seed, states, torch.tensor(rows, dtype=torch.long)


@given(pooling_inputs())
def test_attention_pooling_property(inputs: tuple[int, torch.Tensor, torch.Tensor]) -> None:
    seed, states, mask = inputs
    torch.manual_seed(seed)
    pooling = AttentionPooling(hidden_size=8, attention_hidden=4).eval()
    with torch.no_grad():
        pooled, alpha = pooling(states, mask)
    real = mask.bool()
    assert alpha.shape == mask.shape
    assert pooled.shape == (states.shape[0], 8)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(mask.shape[0]), atol=ATOL, rtol=0)
    assert torch.all(alpha[~real] == 0)
    assert torch.all(alpha >= 0)
