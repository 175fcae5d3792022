"""The pipeline's stages, each declared once: what it reads, what it writes, where it keeps its
consumed offsets, its metrics port and its micro-batch size.

A pure declaration, so every layer can read it: the runner (``finsent.runtime.runner``) runs a
stage from it, the metrics server takes its port from it, the dashboard's consumer lag and the
backtest's drain find each stage's offsets through it, and the CLI, the demo and the backtest
list their stages from it. What each stage *does* is bound to its name in
``finsent.app.stages``, the one module that sees every stage's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from finsent.core.records import Alert, DeadLetter, KeyedPoint, NewsItem, ScoredItem, WindowStat
from finsent.core.settings import Settings

# The one record type each topic carries: the runner decodes a stage's input into it.
TOPIC_RECORDS: MappingProxyType[str, type[Any]] = MappingProxyType(
    {
        "news.raw": NewsItem,
        "news.scored": ScoredItem,
        "news.keyed": KeyedPoint,
        "sentiment.windows": WindowStat,
        "alerts": Alert,
        "news.dlq": DeadLetter,
    }
)


class Checkpoint(StrEnum):
    """Where a stage keeps the offsets it has consumed, and so how it resumes."""

    # In the store, in one fenced transaction with the stage's results and state; on
    # (re)assignment the consumer seeks to them.
    STORE = "store"
    # In the stage's Kafka consumer group, committed once its outputs are acknowledged; the
    # next batch is scored while the last one's acknowledgements arrive.
    KAFKA = "kafka"
    # A source (ingest) consumes no topic; it remembers what it sent in its own memory.
    NONE = "none"


def _batch(settings: Settings) -> int:
    return settings.batch_max_size


def _router_batch(settings: Settings) -> int:
    # Each routed story is a few store upserts and an id lookup: larger batches, fewer commits.
    return settings.batch_max_size * 4


def _aggregator_batch(settings: Settings) -> int:
    return settings.aggregator_batch_max


def _alerter_batch(settings: Settings) -> int:
    return settings.alerter_batch_max


@dataclass(frozen=True)
class StageSpec:
    """One stage: its name (also its CLI command, metrics label and consumer group suffix)."""

    name: str
    summary: str  # one line, for the CLI's help
    source: str | None  # the topic it consumes; None for a source of outside news
    sink: str | None  # the topic it produces; None when its outputs leave the system
    checkpoint: Checkpoint
    port: int  # its well-known metrics port (settings.metrics_port -1)
    batch_size: Callable[[Settings], int] | None = None  # records per micro-batch, if it consumes

    @property
    def input_type(self) -> type[Any] | None:
        return TOPIC_RECORDS[self.source] if self.source else None

    @property
    def output_type(self) -> type[Any] | None:
        return TOPIC_RECORDS[self.sink] if self.sink else None

    def max_batch(self, settings: Settings) -> int:
        if self.batch_size is None:
            raise ValueError(f"stage {self.name} consumes no topic, so it has no batch size")
        return self.batch_size(settings)


# In pipeline order.
STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        name="ingest",
        summary="Push news into news.raw.",
        source=None,
        sink="news.raw",
        checkpoint=Checkpoint.NONE,
        port=9405,
    ),
    StageSpec(
        name="scorer",
        summary="Score news.raw in micro-batches into news.scored.",
        source="news.raw",
        sink="news.scored",
        checkpoint=Checkpoint.KAFKA,
        port=9401,
        batch_size=_batch,
    ),
    StageSpec(
        name="router",
        summary="Store scored items and repartition them by series key into news.keyed.",
        source="news.scored",
        sink="news.keyed",
        checkpoint=Checkpoint.STORE,
        port=9402,
        batch_size=_router_batch,
    ),
    StageSpec(
        name="aggregator",
        summary="Aggregate news.keyed into event-time windows (sentiment.windows and the store).",
        source="news.keyed",
        sink="sentiment.windows",
        checkpoint=Checkpoint.STORE,
        port=9403,
        batch_size=_aggregator_batch,
    ),
    StageSpec(
        name="alerter",
        summary="Detect negative-sentiment spikes in closed windows (alerts topic and the store).",
        source="sentiment.windows",
        sink="alerts",
        checkpoint=Checkpoint.STORE,
        port=9404,
        batch_size=_alerter_batch,
    ),
    StageSpec(
        name="notifier",
        summary="Group, silence and route alerts, and deliver them to Slack and email.",
        source="alerts",
        sink=None,  # its outputs are Slack messages and emails
        checkpoint=Checkpoint.STORE,
        port=9406,
        batch_size=_batch,
    ),
)
_BY_NAME = MappingProxyType({spec.name: spec for spec in STAGES})
STAGE_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def stage(name: str) -> StageSpec:
    """The declared stage called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGE_NAMES)}") from None


def consumers() -> tuple[StageSpec, ...]:
    """The stages that consume a topic, in pipeline order (every one but the sources)."""
    return tuple(spec for spec in STAGES if spec.source is not None)


def consumer_group(topic_prefix: str, stage_name: str) -> str:
    """A stage's Kafka consumer group; the run prefix keeps a run's groups apart, as its topics."""
    return f"{topic_prefix}finsent-{stage_name}"
