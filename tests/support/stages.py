"""Helpers shared by tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsent.app.launch import finsent_command
from finsent.app.supervisor import Supervisor
from finsent.core.settings import Settings

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord


class StageProcesses:
    """`finsent <stage>` processes run the way production runs them, under the one supervisor
    (``finsent.app.supervisor``): each logs to ``<log_dir>/<name>.log``; stopped at the end.

    ``env`` is what the next child starts with: a test may change it between starts.
    """

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        env = {**os.environ, **settings.child_env(), "PYTHONUNBUFFERED": "1"}
        self.supervisor = Supervisor(env, log_dir)

    @property
    def env(self) -> dict[str, str]:
        return self.supervisor.env

    @property
    def procs(self) -> Mapping[str, subprocess.Popen[bytes]]:
        return self.supervisor.procs

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``finsent <args>`` as the child ``name``."""
        return self.supervisor.start(name, finsent_command(*args))

    def log(self, name: str) -> str:
        return self.supervisor.log(name)

    def tails(self, lines: int = 15) -> str:
        """The last lines of every stage's log, for a failure message."""
        return self.supervisor.tails(lines)

    def stop_all(self, timeout_s: float = 30) -> dict[str, int]:
        """SIGTERM to every stage, SIGKILL after ``timeout_s``; each one's exit code."""
        return self.supervisor.stop_all(timeout_s)


def read_topic(
    settings: Settings, name: str, timeout_s: float = 30, **config: Any
) -> list[ConsumerRecord]:
    """Every record of a topic up to its end offsets now, in order, then return at once.

    Not a consumer timeout: that waits its whole length after the last record on every call.
    """
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    topic = settings.topic(name)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **config)
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} has no partitions after {timeout_s}s")
            time.sleep(0.1)  # each look asks the broker for fresh metadata
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        while any((consumer.position(tp) or 0) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read {len(records)} records in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def groups_joined(settings: Settings, stages: tuple[str, ...]) -> bool:
    """Every stage's consumer group has members and a settled assignment."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from finsent.runtime.kafka_io import describe_groups, group_id

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        groups = describe_groups(admin, [group_id(settings, s) for s in stages])
    except KafkaError:  # a coordinator still loading
        return False
    finally:
        admin.close()
    return len(groups) == len(stages) and all(g.state == "Stable" and g.members for g in groups)


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    interval_s: float = 0.3,
    context: Callable[[], str] | None = None,
) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    detail = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")


# Eight different stories of one bank's crisis (Financials, negative with both scorers). Not one
# repeated headline: alerting counts novelty-weighted stories, so a single syndicated headline
# would (rightly) not fire.
CRASH_HEADLINES = (
    "Northwind Bank shares plunge as deposit losses mount",
    "Northwind Bank warns of heavy losses as loan book sours",
    "Depositors withdraw funds from Northwind Bank amid liquidity concerns",
    "Northwind Bank credit rating downgraded on severe losses",
    "Regulators probe Northwind Bank after failed capital raise",
    "Northwind Bank halts trading after steep decline and default fears",
    "Bank stocks tumble as Northwind crisis deepens, losses spread",
    "Northwind Bank faces investigation over misleading disclosures",
)


# Modules a user may keep in their own folder, named like our package or its subpackages.
LOOKALIKES = ("finsent", "alerts", "model", "stream", "ingest", "dashboard")


def lookalike_folder(path: Path) -> Path:
    """A user's folder with modules named like ours, each of which stops whoever imports it."""
    path.mkdir(parents=True, exist_ok=True)
    for name in LOOKALIKES:
        (path / f"{name}.py").write_text('raise SystemExit("shadowed")\n', encoding="utf-8")
    return path
