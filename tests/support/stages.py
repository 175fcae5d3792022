"""Helpers shared by tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from finsent.app.launch import finsent_command
from finsent.core.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StageProcesses:
    """Runs `finsent <stage>` processes the way production does, and stops them at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = {**os.environ, **settings.child_env(), "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            finsent_command(*args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def tails(self, lines: int = 15) -> str:
        """The last lines of every stage's log, for a failure message."""
        parts = []
        for name in self.procs:
            text = self.log(name).splitlines()[-lines:]
            parts.append(f"--- {name} (exit {self.procs[name].poll()}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop_all(self, timeout_s: float = 30) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def read_topic(settings: Settings, name: str, timeout_s: float = 30, **config: object) -> list:
    """Every record of a topic up to its end offsets now, in order, then return at once.

    Not a consumer timeout: that waits its whole length after the last record on every call.
    """
    from kafka import KafkaConsumer, TopicPartition

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
        records: list = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
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

    from finsent.runtime.kafka_io import group_id

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        groups = admin.describe_consumer_groups([group_id(settings, s) for s in stages])
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
