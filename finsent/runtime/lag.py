"""Consumer lag: how far each stage's consumed offsets trail the ends of its Kafka topic.

The dashboard shows it; a stage that closes quiet windows asks it of the stages before it
(``UpstreamLag``), since news still on its way is not quiet news.

Where a stage keeps its offsets is declared with the stage (``finsent.core.stages``): most in
the store (``consumer_offsets``), the scorer in its Kafka consumer group. The topics' end
offsets, and the groups' committed offsets, come from Kafka clients with short timeouts, asked
in background threads. A page never waits more than about a second for Kafka: it gets the last
answer (at most a few seconds old) or none, and shows "n/a" when Kafka cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from finsent.core.stages import STAGES, Checkpoint, StageSpec, consumer_group

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)
EndOffsets = dict[Partition, int]
HeldGroup = tuple[str, str, str]  # (stage, consumer group, topic) of a Kafka-checkpointed stage
K = TypeVar("K", bound=Hashable)  # what a probe is asked about
A = TypeVar("A", bound=Hashable)  # what its answer is keyed by


@dataclass(frozen=True)
class Lag:
    total: int
    by_stage: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{stage} {lag:,}" for stage, lag in sorted(self.by_stage.items()))


def compute_lag(
    stored: Mapping[tuple[str, str, int], int],
    ends: Mapping[Partition, int],
    held: Mapping[str, int] | None = None,
) -> Lag:
    """Per stage, the records between each stored next offset and its partition's end
    (never negative: the end may be read a moment before the stored offset), plus ``held``,
    the lag of the stages whose offsets Kafka holds. Partitions with no known end are left
    out."""
    by_stage: dict[str, int] = {}
    for (stage, topic, partition), next_offset in stored.items():
        end = ends.get((topic, partition))
        if end is None:
            continue
        by_stage[stage] = by_stage.get(stage, 0) + max(int(end) - int(next_offset), 0)
    for stage, lag in (held or {}).items():
        by_stage[stage] = by_stage.get(stage, 0) + max(int(lag), 0)
    return Lag(total=sum(by_stage.values()), by_stage=by_stage)


def held_groups(stored: Iterable[tuple[str, str, int]]) -> list[HeldGroup]:
    """The consumer groups (and topics) of the stages that checkpoint in Kafka, for every run
    whose store-checkpointed stages stored offsets here: a run's topic prefix is what precedes
    a stage's declared source in the topic names it stored."""
    sources = {s.name: s.source for s in STAGES if s.checkpoint is Checkpoint.STORE and s.source}
    prefixes = {
        topic.removesuffix(source)
        for stage, topic, _ in stored
        if (source := sources.get(stage)) is not None and topic.endswith(source)
    }
    return sorted(
        (spec.name, consumer_group(prefix, spec.name), prefix + spec.source)
        for prefix in prefixes
        for spec in STAGES
        if spec.checkpoint is Checkpoint.KAFKA and spec.source
    )


class BackgroundProbe(Generic[K, A]):
    """Asks ``fetch`` in a background thread, at most once per ``max_age`` seconds, and never
    keeps a caller more than ``wait`` seconds.

    The first call for a set of keys waits up to ``wait`` for an answer; later calls return
    the last answer at once (refreshing it in the background when it is older than
    ``max_age``), or None while there is none, once it is older than ``stale_after``, or when
    the last attempt failed."""

    def __init__(
        self,
        fetch: Callable[[list[K]], dict[A, int]],
        *,
        max_age: float = 5.0,
        wait: float = 1.0,
        stale_after: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.max_age = max_age
        self.wait = wait
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._result: dict[A, int] | None = None
        self._for: tuple[K, ...] | None = None
        self._at = -math.inf
        self._running: threading.Event | None = None
        self._waited: set[tuple[K, ...]] = set()  # key sets a caller waited for

    def get(self, keys: Iterable[K], wait: float | None = None) -> dict[A, int] | None:
        """The answer for ``keys``; ``wait`` overrides how long a first call may wait (0: ask
        in the background only, and let a later call wait)."""
        wanted: tuple[K, ...] = tuple(sorted(set(keys)))  # type: ignore[type-var]
        if not wanted:
            return {}
        longest = self.wait if wait is None else wait
        with self._lock:
            age = self.clock() - self._at
            known = self._for == wanted
            if known and age < self.max_age:
                return self._result
            done = self._running
            if done is None:
                done = self._running = threading.Event()
                threading.Thread(
                    target=self._refresh, args=(wanted, done), name="kafka-lag", daemon=True
                ).start()
            first = longest > 0 and wanted not in self._waited
            if first:
                if len(self._waited) > 64:
                    self._waited.clear()
                self._waited.add(wanted)
        if first:
            done.wait(longest)  # nothing to show yet: worth one short wait
        with self._lock:
            if self._for == wanted and self.clock() - self._at < self.stale_after:
                return self._result
            return None

    def _refresh(self, wanted: tuple[K, ...], done: threading.Event) -> None:
        try:
            result: dict[A, int] | None = self.fetch(list(wanted))
        except Exception as exc:  # Kafka down or slow: show "n/a", try again later
            log.debug("offsets unavailable: %s", exc)
            result = None
        with self._lock:
            self._result, self._for, self._at = result, wanted, self.clock()
            self._running = None
        done.set()


class EndOffsetsProbe(BackgroundProbe[Partition, Partition]):
    """End offsets of partitions; ``held``, when given, is asked for the lag of the stages
    whose offsets Kafka holds (keyed by stage)."""

    def __init__(
        self,
        fetch: Callable[[list[Partition]], EndOffsets],
        *,
        held: BackgroundProbe[HeldGroup, str] | None = None,
        **timing: Any,
    ) -> None:
        super().__init__(fetch, **timing)
        self.held = held


def _client_options(bootstrap: str, client_id: str, timeout_ms: int) -> dict[str, Any]:
    """What every lag client shares: short timeouts, and a quick reconnect to a broker back."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "request_timeout_ms": timeout_ms,
        "api_version_auto_timeout_ms": min(timeout_ms, 2000),
        "reconnect_backoff_max_ms": 1000,
    }


def _offsets_consumer(bootstrap: str, client_id: str, timeout_ms: int) -> Any:
    """A consumer in no group, only for asking end offsets."""
    from kafka import KafkaConsumer

    return KafkaConsumer(
        **_client_options(bootstrap, client_id, timeout_ms),
        enable_auto_commit=False,
        isolation_level="read_committed",  # what the stages' consumers can read
        metadata_max_age_ms=30_000,
    )


class KafkaEndOffsets:
    """End offsets from one Kafka client, kept between calls and rebuilt after a failure.

    Only ever called from the probe's one background thread at a time."""

    def __init__(
        self, bootstrap: str, timeout_ms: int = 3000, client_id: str = "finsent-dashboard"
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout_ms = timeout_ms
        self.client_id = client_id
        self._consumer: Any = None

    def __call__(self, partitions: list[Partition]) -> EndOffsets:
        from kafka.structs import TopicPartition

        if self._consumer is None:
            self._consumer = _offsets_consumer(self.bootstrap, self.client_id, self.timeout_ms)
        try:
            ends = self._consumer.end_offsets([TopicPartition(t, p) for t, p in partitions])
        except Exception:
            self.close()
            raise
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()


class KafkaHeldLag:
    """The lag of the stages that checkpoint in Kafka: their groups' committed offsets against
    the ends of their topics, from one admin client and one consumer, kept between calls and
    rebuilt after a failure. Only ever called from its probe's one background thread."""

    def __init__(
        self, bootstrap: str, timeout_ms: int = 3000, client_id: str = "finsent-dashboard"
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout_ms = timeout_ms
        self.client_id = client_id
        self._admin: Any = None
        self._consumer: Any = None

    def __call__(self, groups: list[HeldGroup]) -> dict[str, int]:
        from kafka import KafkaAdminClient

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    **_client_options(self.bootstrap, self.client_id, self.timeout_ms)
                )
            if self._consumer is None:
                self._consumer = _offsets_consumer(self.bootstrap, self.client_id, self.timeout_ms)
            lag: dict[str, int] = {}
            for stage, group, topic in groups:
                committed = {
                    tp: int(meta.offset)
                    for tp, meta in self._admin.list_consumer_group_offsets(group).items()
                    if tp.topic == topic and meta.offset >= 0
                }
                if not committed:
                    continue  # nothing consumed yet: no lag to show, as for the store's
                ends = self._consumer.end_offsets(list(committed))
                behind = sum(max(int(ends[tp]) - offset, 0) for tp, offset in committed.items())
                lag[stage] = lag.get(stage, 0) + behind
        except Exception:
            self.close()
            raise
        return lag

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None


@lru_cache(maxsize=4)
def probe_for(bootstrap: str) -> EndOffsetsProbe:
    """One probe (and its Kafka clients) per broker address for the whole process."""
    return EndOffsetsProbe(
        KafkaEndOffsets(bootstrap), held=BackgroundProbe(KafkaHeldLag(bootstrap))
    )


def consumer_lag(stored: Mapping[tuple[str, str, int], int], probe: EndOffsetsProbe) -> Lag | None:
    """Every stage's lag, or None when nothing is stored yet or Kafka gives no answer.

    The Kafka-checkpointed stages (the scorer) are shown once their groups' answer is in; both
    questions go out at once, and the page waits about a second for the two together."""
    if not stored:
        return None
    started = time.monotonic()
    groups = held_groups(stored) if probe.held is not None else []
    if probe.held is not None and groups:
        probe.held.get(groups, wait=0)  # asked now, answered while the end offsets are
    ends = probe.get({(topic, partition) for _, topic, partition in stored})
    if ends is None:
        return None
    held = None
    if probe.held is not None and groups:
        held = probe.held.get(groups, wait=max(probe.wait - (time.monotonic() - started), 0))
    return compute_lag(stored, ends, held)


def upstream_of(spec: StageSpec) -> list[StageSpec]:
    """The consuming stages whose output reaches ``spec``'s input, nearest first."""
    found: list[StageSpec] = []
    wanted = {spec.source}
    while wanted:
        feeding = [s for s in STAGES if s.sink in wanted and s.source and s not in found]
        found.extend(feeding)
        wanted = {s.source for s in feeding}
    return found


class UpstreamLag:
    """Whether the stages before one stage have read all their input, as far as their
    checkpoints tell: the store's offsets for store-checkpointed stages, the consumer group's
    for the others. Asked in the background (``BackgroundProbe``), so a caller never waits on
    Kafka; an answer not in yet, or a failed one, counts as not caught up."""

    def __init__(
        self,
        upstream: list[StageSpec],
        topic_prefix: str,
        load_offsets: Callable[[str], Mapping[Partition, int]],
        probe: EndOffsetsProbe,
    ) -> None:
        self.stored_stages = [s.name for s in upstream if s.checkpoint is Checkpoint.STORE]
        self.groups: list[HeldGroup] = [
            (s.name, consumer_group(topic_prefix, s.name), topic_prefix + s.source)
            for s in upstream
            if s.checkpoint is Checkpoint.KAFKA and s.source
        ]
        self.load_offsets = load_offsets
        self.probe = probe

    @classmethod
    def kafka(
        cls,
        spec: StageSpec,
        bootstrap: str,
        topic_prefix: str,
        load_offsets: Callable[[str], Mapping[Partition, int]],
    ) -> UpstreamLag:
        client_id = f"finsent-{spec.name}-upstream"
        probe = EndOffsetsProbe(
            KafkaEndOffsets(bootstrap, client_id=client_id),
            held=BackgroundProbe(KafkaHeldLag(bootstrap, client_id=client_id)),
        )
        return cls(upstream_of(spec), topic_prefix, load_offsets, probe)

    def caught_up(self) -> bool:
        """True once the last answers (at most a few seconds old) show no upstream lag."""
        stored = {
            (stage, topic, partition): offset
            for stage in self.stored_stages
            for (topic, partition), offset in self.load_offsets(stage).items()
        }
        held: dict[str, int] | None = {}
        if self.groups:
            assert self.probe.held is not None
            held = self.probe.held.get(self.groups, wait=0)
        ends = self.probe.get({(topic, partition) for _, topic, partition in stored}, wait=0)
        if held is None or ends is None:
            return False
        return compute_lag(stored, ends, held).total == 0

    def close(self) -> None:
        for fetch in (self.probe.fetch, self.probe.held.fetch if self.probe.held else None):
            close = getattr(fetch, "close", None)
            if close is not None:
                close()
