"""``finsent kafka grow``: more partitions for existing topics, with the state of keyed ones.

An unkeyed topic (news.raw, news.scored, news.dlq) just grows; every stage start does that too.
A keyed topic (``KEYED_TOPICS``) sends each key to murmur2(key) mod its partition count, so
growing it sends most keys to another partition, whose owner has none of their state: a
series' open windows would be split between two aggregators. So with the stages stopped and
every record of the keyed topics read, this moves each key's state rows to the partition its
key goes to now (``repartition_state`` of the aggregator, alerter and notifier), one store
transaction per stage, and only then grows the topics. Moving is idempotent (a row's place
depends only on its key and the new count), so a grow cut short is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finsent.alerts import alerter, notifier
from finsent.core.settings import KEYED_TOPICS, TOPIC_NAMES, Settings
from finsent.core.stages import Checkpoint, consumers
from finsent.runtime.kafka_io import (
    active_groups,
    end_offsets,
    ensure_topics,
    grow_topics,
    partition_counts,
    partition_of,
)
from finsent.runtime.store import Commit, Store
from finsent.stream import aggregation

StateMover = Callable[[Mapping[str, Any], Callable[[str], int]], dict[str, Any]]
# The stage logic that keeps state per partition of each keyed topic, by its stage name.
MOVERS: Mapping[str, StateMover] = {
    "aggregator": aggregation.repartition_state,
    "alerter": alerter.repartition_state,
    "notifier": notifier.repartition_state,
}


class GrowError(RuntimeError):
    """The topics cannot grow now; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class Growth:
    """One topic's partition count before and after, and the state rows that changed partition."""

    topic: str  # the physical name
    before: int
    after: int
    stage: str | None = None  # the consumer whose state moved (keyed topics)
    moved_rows: int = 0

    def describe(self) -> str:
        if self.after == self.before:
            return f"{self.topic}: keeps {self.before} partitions (Kafka cannot remove any)"
        moved = f"; {self.moved_rows} {self.stage} state rows moved" if self.stage else ""
        return f"{self.topic}: {self.before} -> {self.after} partitions{moved}"


def plan(settings: Settings) -> dict[str, tuple[int, int]]:
    """Each existing pipeline topic whose count differs from the settings': (now, asked)."""
    counts = partition_counts(settings, TOPIC_NAMES)
    asked = {name: settings.partitions_for(name) for name in counts}
    return {name: (counts[name], asked[name]) for name in counts if counts[name] != asked[name]}


def grow(settings: Settings, store: Store) -> list[Growth]:
    """Grow every pipeline topic to the partitions the settings ask for (``GrowError`` when
    keyed ones must grow and a stage runs or has records to read), moving the keyed topics'
    state first; then create what is missing. What changed (or was kept), topic by topic."""
    changes = plan(settings)
    larger = {name: asked for name, (now, asked) in changes.items() if asked > now}
    keyed = [name for name in TOPIC_NAMES if name in larger and name in KEYED_TOPICS]
    readers = {spec.source: spec for spec in consumers() if spec.source in keyed}
    if keyed:
        _check_stopped(settings)
        _check_read(settings, store, keyed)
    growths = []
    for name in TOPIC_NAMES:
        if name not in changes:
            continue
        now, asked = changes[name]
        after = max(now, asked)
        spec = readers.get(name)
        moved = _move_state(store, spec.name, after) if spec is not None else 0
        stage = spec.name if spec is not None else None
        growths.append(Growth(settings.topic(name), now, after, stage, moved))
    if larger:
        grow_topics(settings, larger)
    ensure_topics(settings)  # creates what is missing, and waits for every partition's leader
    return growths


def _check_stopped(settings: Settings) -> None:
    running = active_groups(settings, [spec.name for spec in consumers()])
    if running:
        names = ", ".join(f"{stage} ({n})" for stage, n in sorted(running.items()))
        raise GrowError(
            f"stages still run (members per group: {names}); stop every stage first, "
            "then run `finsent kafka grow` again (a stopped member with FINSENT_INSTANCE_ID "
            "stays listed for FINSENT_SESSION_TIMEOUT_MS)"
        )


def _check_read(settings: Settings, store: Store, keyed: list[str]) -> None:
    """``GrowError`` unless the consumers of the keyed topics have read every record: one
    left in its old partition would reach a key's old owner after its state has moved."""
    unread: list[str] = []
    for spec in consumers():
        if spec.source not in keyed:
            continue
        # The keyed topics' consumers keep their offsets in the store, with their state.
        assert spec.checkpoint is Checkpoint.STORE, spec
        stored = store.load_offsets(spec.name)
        ends = end_offsets(settings, [spec.source])
        left = sum(max(end - stored.get(tp, 0), 0) for tp, end in ends.items())
        if left:
            unread.append(f"{spec.name} {left} of {settings.topic(spec.source)}")
    if unread:
        raise GrowError(
            f"records not read yet ({', '.join(unread)}); with ingest, the scorer and the "
            "router stopped, run the other stages until they have read them all, stop them, "
            "then run `finsent kafka grow` again"
        )


def _move_state(store: Store, stage: str, partitions: int) -> int:
    """Move ``stage``'s state rows to the partitions their keys go to among ``partitions``,
    in one transaction; how many rows changed name."""
    rows = store.load_state(stage)
    moved = MOVERS[stage](rows, lambda key: partition_of(key, partitions))
    gone = set(rows) - set(moved)
    put = {k: v for k, v in moved.items() if k not in rows or rows[k] != v}
    if put or gone:
        store.commit(Commit(stage=stage, state_put=put, state_delete=gone))
    return len(gone)
