"""Per-company sentiment on FinEntity: method × accuracy / macro-F1, on all entities and on the
documents whose entities disagree ("mixed"), for the design half and the held-out half
(split by document, ``finsent.model.entity_eval``); then the scorer's extra cost on the
archive's headlines.

    .venv/bin/python bench/bench_entity_sentiment.py [--proximity] [--cost-items 3000]

``--proximity`` adds the rejected attention method: the model's α re-weighted towards the
entity's tokens, exp(-distance/tau), over per-token logits. The int8 graph gives no per-token
states, so this runs the fp32 network (needs the ``train`` extra) on 128 tokens.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

from finsent.model.artifact import read_artifact
from finsent.model.entity_eval import METHODS, EntityDoc, Method, cached, evaluate, load_finentity
from finsent.model.entity_sentiment import (
    EntityScorer,
    Probabilities,
    predictor_probabilities,
)
from finsent.model.infer import make_predictor

# The workspace's datasets beside the checkout (the product's default is the user data dir).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ARCHIVE = SHARED_DATASETS / "rss_link_db_2023_business_h1"


def proximity(taus: Sequence[float]) -> dict[str, Method]:
    """Attention pooling pulled towards the entity, on the fp32 network's token states."""
    import torch

    from finsent.model.artifact import load_artifact
    from finsent.model.infer import BackboneText

    network = load_artifact(read_artifact().path).network.eval()
    tokenizer = BackboneText(embeddings=False).tokenizer
    tokenizer.enable_truncation(128)
    tokens: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def token_view(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(character offsets, α, per-token sentiment logits), once per text."""
        if text not in tokens:
            encoding = tokenizer.encode(text)
            ids = torch.tensor([encoding.ids])
            with torch.inference_mode():
                states = network.encoder(
                    input_ids=ids, attention_mask=torch.ones_like(ids)
                ).last_hidden_state[0]
                pooling = network.pooling
                z = pooling.score(torch.tanh(pooling.project(states))).squeeze(-1)
                # The sentiment head is linear: pooled logits = α-weighted token logits.
                logits = network.sentiment_head(states)
            tokens[text] = (
                np.array(encoding.offsets),
                torch.softmax(z, 0).numpy(),
                logits.numpy(),
            )
        return tokens[text]

    def method_for(tau: float) -> Method:
        def method(_: Probabilities, docs: Sequence[EntityDoc]) -> list[list[int]]:
            out = []
            for doc in docs:
                offsets, alpha, logits = token_view(doc.text)
                position = np.arange(len(offsets))
                labels = []
                for entity in doc.entities:
                    inside = np.flatnonzero(
                        (offsets[:, 0] < entity.end) & (offsets[:, 1] > entity.start)
                    )
                    if len(inside) == 0:  # truncated away: the whole text's pooling
                        labels.append(int((alpha @ logits).argmax()))
                        continue
                    distance = np.abs(position[:, None] - inside[None, :]).min(1)
                    weights = alpha * np.exp(-distance / tau)
                    labels.append(int((weights / weights.sum() @ logits).argmax()))
                out.append(labels)
            return out

        return method

    return {f"attention near entity, tau={tau:g} (fp32)": method_for(tau) for tau in taus}


def table(probabilities: Probabilities, docs: list[EntityDoc], methods: dict[str, Method]) -> None:
    for half, chosen in (("design half", False), ("held-out half", True)):
        part = [doc for doc in docs if doc.held_out == chosen]
        mixed = [doc for doc in part if doc.mixed]
        print(
            f"\n== {half}: {len(part)} documents, {sum(len(d.entities) for d in part)} entities"
            f"; mixed: {len(mixed)} documents, {sum(len(d.entities) for d in mixed)} entities"
        )
        print(f"{'method':34} {'accuracy':>8} {'macro-F1':>8} {'mixed acc':>9} {'mixed F1':>8}")
        for name, method in methods.items():
            result = evaluate(probabilities, part, method)
            every, subset = result["all"], result["mixed"]
            print(
                f"{name:34} {every.accuracy:8.3f} {every.macro_f1:8.3f}"
                f" {subset.accuracy:9.3f} {subset.macro_f1:8.3f}"
            )


def cost(probabilities: Probabilities, items_wanted: int) -> None:
    """Extra seconds per 1,000 archive stories: the entity pass after the story scoring."""
    from finsent.ingest.replay import ReplayStats, load
    from finsent.ingest.tickers import company_index
    from finsent.model.infer import AttentionScorer

    if not ARCHIVE.exists():
        print(f"\n== cost: not measured, {ARCHIVE.name} absent")
        return
    items = load(ARCHIVE, "archive", None, ReplayStats(), datetime.now(UTC))[:items_wanted]
    scorer = AttentionScorer(threads=1)
    counted: list[int] = []

    def counting(texts: Sequence[str]) -> np.ndarray:
        counted.append(len(texts))
        return predictor_probabilities(scorer.predictor)(texts)

    entities = EntityScorer(counting, company_index().find_names)
    scorer.score(items[:64])  # warm up
    started = time.perf_counter()
    scored = [s for i in range(0, len(items), 64) for s in scorer.score(items[i : i + 64])]
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    with_entities = [
        s for i in range(0, len(scored), 64) for s in entities.attach(scored[i : i + 64])
    ]
    extra = time.perf_counter() - started
    several = sum(len(s.item.tickers) >= 2 for s in scored)
    got = sum(bool(s.entities) for s in with_entities)
    differ = sum(
        any(e.sentiment != s.sentiment for e in s.entities.values()) for s in with_entities
    )
    per_k = 1000 / len(scored)
    print(f"\n== cost on the archive's first {len(scored):,} stories (1 thread, batches of 64)")
    print(f"  stories tagging 2+ tickers      {several:6,}")
    print(
        f"  stories given per-company sentiment {got:6,} ({differ:,} with a company's label "
        "not the headline's)"
    )
    print(f"  extra clauses run through the model  {sum(counted):6,}")
    print(f"  scoring     {scoring * per_k:6.2f} s per 1,000 stories")
    print(
        f"  entities    {extra * per_k:6.2f} s per 1,000 stories (+{100 * extra / scoring:.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proximity", action="store_true", help="add the fp32 attention method")
    parser.add_argument("--cost-items", type=int, default=3000, help="0: skip the cost part")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    docs = load_finentity(SHARED_DATASETS)
    predictor = make_predictor(read_artifact(), threads=args.threads, batch_invariant=True)
    probabilities = cached(predictor_probabilities(predictor))
    methods = dict(METHODS)
    if args.proximity:
        methods |= proximity((2.0, 4.0, 8.0))
    table(probabilities, docs, methods)
    if args.cost_items:
        cost(probabilities, args.cost_items)


if __name__ == "__main__":
    main()
