"""Scale-out measured (issue 21): 1, 2 and 4 scorer and aggregator processes over 4 partitions.

For each process count N (``--procs``), a fresh run prefix (its own topics of 4 partitions and
its own consumer group) on one local broker:

1. N real ``finsent <stage>`` processes start on the empty input topic; once the group is
   stable with every partition assigned (the scorer has loaded its model by then), they are
   frozen (SIGSTOP), so that writing the input does not compete with them for the cores.
2. The input is written, spread over the 4 partitions by key: ``--items`` news items on
   ``news.raw`` for the scorer (archive headlines, else generated ones), or the keyed points
   of ``--stories`` scored stories on ``news.keyed`` for the aggregator (``bench_stream``'s
   stories through ``stream.router.route``, as ``bench_pipeline.py`` makes them).
3. They are released (SIGCONT) and timed from the release to the end: for the scorer, the
   last output record's timestamp on ``news.scored``; for the aggregator, the moment its
   offsets in the store cover every point (polled every 50 ms). CPU seconds of each process
   over that span come from /proc.
4. Checks: every item scored once (outputs, distinct story ids and dead letters against the
   input); every point counted once in each window size (the stored final windows plus those
   the stopped aggregators left open, closed with the aggregator's own code, as the backtest
   does at the end of a feed).

The scorer processes run ``--model-threads`` threads each (default 1; 0 is the stage's own
default, one per core, with which a single process uses every core already and leaves nothing
for more processes to show). Their store holds only the model registry they read. The aggregator's store is SQLite and, where the PostgreSQL server binaries are
installed, a throwaway PostgreSQL (``--store``): every aggregator writes its windows, state and
offsets to the one store, in transactions fenced on the partitions it owns.

``--cpus LIST`` pins the stage processes with ``taskset -c LIST`` (the broker and this script
are not pinned; run the script itself under ``taskset`` to keep them off those cores).

    .venv/bin/python bench/bench_scaleout.py [--part scorer|aggregator|all] [--procs 1,2,4]
        [--items 4000] [--stories 10000] [--cpus 0-3] [--repeats 1] [--store sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from _machine import machine_line  # bench/_machine.py: CPU model, vector flags, cores

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
TICK = os.sysconf("SC_CLK_TCK")


# -- pure helpers (tests/test_bench_scaleout.py) -------------------------------------------


def parse_procs(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4): process counts, each at least 1, in the order given."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--procs takes counts like 1,2,4, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--procs takes counts of 1 or more, got {text!r}")
    return counts


def parse_cpus(text: str, cores: int | None = None) -> tuple[int, ...]:
    """A ``taskset -c`` list (``"0-3,8"``) → the CPUs it names, sorted; refused when empty,
    malformed or naming a CPU the machine does not have. (Not checked against this process's
    own affinity: the script may run pinned elsewhere, with the broker, on purpose.)"""
    cores = cores or os.cpu_count() or 1
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            first, last = int(low), int(high) if sep else int(low)
            if first < 0 or last < first:
                raise ValueError(part)
            cpus.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--cpus takes a taskset list like 0-1 or 0,2,4-7, got {text!r}"
        ) from None
    if max(cpus) >= cores:
        raise argparse.ArgumentTypeError(
            f"--cpus names CPU {max(cpus)}, but this machine has CPUs 0-{cores - 1}"
        )
    return tuple(sorted(cpus))


def throughput(count: int, started: float, ended: float) -> float:
    """Records per second over [started, ended]; a span under 1 ms counts as 1 ms."""
    return count / max(ended - started, 1e-3)


@dataclass(frozen=True)
class Run:
    """One measured run of N processes."""

    procs: int
    count: int  # records consumed
    seconds: float  # from the release to the end
    cpu: tuple[float, ...]  # CPU seconds of each process over that span

    @property
    def rate(self) -> float:
        return throughput(self.count, 0.0, self.seconds)


def table(runs: Sequence[Run], unit: str) -> list[str]:
    """One line per process count: median throughput (over its repeats), its ratio to the
    smallest count's, and the median CPU seconds per process and of them all."""
    by_procs: dict[int, list[Run]] = {}
    for run in runs:
        by_procs.setdefault(run.procs, []).append(run)
    lines = [
        f"{'processes':>9} {unit + '/s':>12} {'x of ' + str(min(by_procs)):>7} "
        f"{'CPU s/proc':>10} {'CPU s all':>9}"
    ]
    base: float | None = None
    for procs in sorted(by_procs):
        group = by_procs[procs]
        rate = statistics.median(r.rate for r in group)
        cpu = statistics.median(statistics.mean(r.cpu) for r in group)
        cpu_all = statistics.median(sum(r.cpu) for r in group)
        base = base or rate
        lines.append(f"{procs:9d} {rate:12,.0f} {rate / base:7.2f} {cpu:10.1f} {cpu_all:9.1f}")
    return lines


# -- the stage processes -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


class Stages:
    """N ``finsent <stage>`` processes in one consumer group, optionally pinned to CPUs."""

    def __init__(self, stage: str, n: int, env: dict[str, str], logs: Path, cpus: str) -> None:
        from finsent.app.launch import finsent_command

        pin = ["taskset", "-c", cpus] if cpus else []  # taskset execs: the pid is the stage's
        self.stage = stage
        self.logs = [logs / f"{stage}-{i}.log" for i in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, log in enumerate(self.logs):
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [*pin, *finsent_command(stage)],
                        env={**env, "FINSENT_INSTANCE_ID": f"p{i}"},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"finsent {self.stage} exited ({proc.returncode}):\n{tail}")

    def signal(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def affinities(self) -> set[tuple[int, ...]]:
        """The CPU sets the processes may run on (one, when pinned)."""
        return {tuple(sorted(os.sched_getaffinity(proc.pid))) for proc in self.procs}

    def cpu(self) -> list[float]:
        return [cpu_seconds(proc.pid) for proc in self.procs]

    def stop(self) -> None:
        """SIGTERM (each finishes its batch and commits), then wait."""
        self.signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_assigned(admin: Any, group: str, stages: Stages, timeout_s: float = 300) -> None:
    """Until the group is stable with every member in it and every partition assigned."""
    members = len(stages.procs)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stages.check_alive()
        with contextlib.suppress(Exception):  # the coordinator is not up before the first join
            (info,) = admin.describe_consumer_groups([group])
            owned = [
                sum(len(parts) for _topic, parts in m.member_assignment.assignment)
                for m in info.members
                if m.member_assignment is not None
            ]
            if info.state == "Stable" and len(owned) == members and sum(owned) == PARTITIONS:
                time.sleep(1.0)  # the members' own SyncGroup and seek, after the broker's
                return
        time.sleep(0.25)
    raise SystemExit(f"group {group}: {members} members not all in and assigned in {timeout_s} s")


@contextlib.contextmanager
def running(stage: str, n: int, settings: Any, logs: Path, cpus: str) -> Iterator[Stages]:
    from kafka import KafkaAdminClient

    from finsent.runtime.kafka_io import group_id

    env = {**os.environ, **settings.child_env(), "PYTHONUNBUFFERED": "1"}
    stages = Stages(stage, n, env, logs, cpus)
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        wait_assigned(admin, group_id(settings, stage), stages)
        if cpus and stages.affinities() != {parse_cpus(cpus)}:
            raise SystemExit(f"the stages are not pinned to {cpus}: {stages.affinities()}")
        yield stages
    finally:
        stages.stop()
        admin.close()


def run_settings(base: Any, part: str, n: int, rep: int, store_url: str, threads: int) -> Any:
    from finsent.runtime.kafka_io import ensure_topics
    from finsent.runtime.store import Store

    settings = base.model_copy(
        update={
            "topic_prefix": f"scale{uuid.uuid4().hex[:6]}-{part}{n}r{rep}.",
            "partitions": PARTITIONS,
            "store_url": store_url,
            "metrics_port": 0,  # any free port: N processes of one stage
            # Frozen while the input is written: keep their membership meanwhile.
            "session_timeout_ms": 60_000,
            "model_threads": threads,
        }
    )
    ensure_topics(settings)
    Store(settings.database_url).close()  # the schema exists before the stages race for it
    return settings


def produce(settings: Any, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[int]:
    """Write keyed records; return how many each partition of the topic got."""
    from kafka import KafkaProducer

    from finsent.runtime.kafka_io import end_offsets

    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, batch_size=256 * 1024
    )
    for key, value in records:
        producer.send(settings.topic(topic), key=key, value=value)
    producer.flush()
    producer.close()
    ends = end_offsets(settings, [topic])
    return [ends[(settings.topic(topic), p)] for p in range(PARTITIONS)]


def shares(counts: list[int]) -> str:
    total = sum(counts) or 1
    return " / ".join(f"{c / total:.0%}" for c in counts)


# -- the scorer ----------------------------------------------------------------------------


def news_items(n: int) -> tuple[list[Any], str]:
    """n distinct archive headlines (every k-th kept story), else generated ones."""
    from bench_backtest import ARCHIVE

    if ARCHIVE.is_dir():
        from finsent.ingest.replay import ReplayStats, load

        distinct = {item.id: item for item in load(ARCHIVE, "archive", None, ReplayStats())}
        items = list(distinct.values())
        if len(items) >= n:
            step = len(items) // n
            return items[::step][:n], f"archive headlines (1 in {step} of {len(items):,})"
    from bench_stream import news_items as generated

    return generated(n), "generated headlines (the sample feed's, cycled)"


def read_outputs(settings: Any, topic: str) -> list[tuple[int, bytes]]:
    """Every record of a topic: (timestamp ms, value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        parts = [TopicPartition(settings.topic(topic), p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[tuple[int, bytes]] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.timestamp, r.value) for r in records)
        return out
    finally:
        consumer.close()


def bench_scorer(base: Any, work: Path, args: argparse.Namespace) -> None:
    from kafka import KafkaAdminClient

    from finsent.core.records import ScoredItem, decode, encode
    from finsent.runtime.kafka_io import group_id

    items, origin = news_items(args.items)
    records = [(item.id.encode(), encode(item)) for item in items]
    print(
        f"\n== scorer: {len(items):,} {origin} on news.raw ({PARTITIONS} partitions), "
        + (
            f"{args.model_threads} model thread(s) per process"
            if args.model_threads
            else "model threads per process: one per core (the default)"
        )
    )
    runs: list[Run] = []
    for rep in range(args.repeats):
        for n in args.procs:
            run_dir = work / f"scorer-{n}-{rep}"
            run_dir.mkdir()
            store = f"sqlite:///{run_dir / 'store.db'}"  # the model registry's, read only
            settings = run_settings(base, "scorer", n, rep, store, args.model_threads)
            admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
            with contextlib.closing(admin):
                committed = partial(kafka_committed, admin, group_id(settings, "scorer"))
                released, _done, cpu, spread = drain(
                    "scorer", n, settings, run_dir, args.cpus, "news.raw", records, committed
                )
            scored = read_outputs(settings, "news.scored")
            dead = read_outputs(settings, "news.dlq")
            ids = Counter(decode(ScoredItem, value).item.id for _ts, value in scored)
            # The end is the last output's timestamp (the scorer's send), not our poll.
            last = max(ts for ts, _value in scored) / 1000
            run = Run(n, len(records), last - released, cpu)
            runs.append(run)
            check = (
                "each scored once"
                if len(scored) == len(ids) == len(records) and not dead
                else f"CHECK: {len(scored):,} outputs, {len(ids):,} distinct of "
                f"{len(records):,}, {sum(c - 1 for c in ids.values())} repeats, "
                f"{len(dead)} dead letters"
            )
            print(
                f"  {n} process(es), run {rep + 1}: {run.rate:8,.0f} stories/s over "
                f"{run.seconds:5.1f} s; partitions {shares(spread)}; {check}",
                flush=True,
            )
    print()
    print("\n".join("  " + line for line in table(runs, "stories")))


def kafka_committed(admin: Any, group: str) -> int:
    try:
        offsets = admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - the coordinator may be between generations
        return 0
    return sum(max(int(meta.offset), 0) for meta in offsets.values())


def wait_consumed(consumed: Any, total: int, stages: Stages, timeout_s: float = 600) -> float:
    """Poll ``consumed()`` every 50 ms until it reaches ``total``; the wall time it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if consumed() >= total:
            return time.time()
        stages.check_alive()
        time.sleep(0.05)
    raise SystemExit(f"finsent {stages.stage} did not consume {total:,} records in {timeout_s} s")


def drain(
    stage: str,
    n: int,
    settings: Any,
    logs: Path,
    cpus: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    consumed: Callable[[], int],
) -> tuple[float, float, tuple[float, ...], list[int]]:
    """N stage processes drain ``records``, written to ``topic`` while they are frozen: the
    wall time of their release and of the end, the CPU seconds of each in between, and the
    records each partition got."""
    with running(stage, n, settings, logs, cpus) as stages:
        stages.signal(signal.SIGSTOP)
        spread = produce(settings, topic, records)
        cpu0 = stages.cpu()
        released = time.time()
        stages.signal(signal.SIGCONT)
        done = wait_consumed(consumed, len(records), stages)
        cpu = tuple(b - a for a, b in zip(cpu0, stages.cpu(), strict=True))
    return released, done, cpu, spread


# -- the aggregator ------------------------------------------------------------------------


@contextlib.contextmanager
def stores(kinds: Sequence[str], work: Path) -> Iterator[dict[str, Any]]:
    """A factory of fresh store URLs per kind: SQLite files, databases of a local PostgreSQL."""
    factories: dict[str, Any] = {}
    server = None
    if "sqlite" in kinds:
        factories["sqlite"] = lambda name: f"sqlite:///{work / f'{name}.db'}"
    if "postgres" in kinds:
        sys.path.insert(0, str(ROOT / "tests"))  # the tests' launcher (tests/ is not installed)
        from support.postgres_local import LocalPostgres, find_bindir

        from finsent.app.ports import free_port

        if find_bindir() is None:
            print("(no PostgreSQL server binaries: `bash scripts/ensure_postgres.sh`; SQLite only)")
        else:
            home = Path(tempfile.mkdtemp(prefix="finsent-pg-"))
            home.chmod(0o755)  # as root the server runs as `postgres`, which must get in
            server = LocalPostgres(home, free_port())
            server.start()
            factories["postgres"] = lambda name: server.create_database(name.replace("-", "_"))
    try:
        yield factories
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.home, ignore_errors=True)


def stored_offsets(store: Any) -> int:
    """Records the aggregators have committed, windows and state with them, in the store."""
    from finsent.stream.aggregation import STAGE

    return sum(store.load_offsets(STAGE).values())


def window_totals(settings: Any, store: Any) -> dict[int, int]:
    """Points counted per window size: the stored final windows, plus the windows the stopped
    aggregators left open, closed with the aggregator's own code (not stored)."""
    from finsent.runtime.store import windows
    from finsent.stream.aggregation import STAGE, Aggregator, AggregatorConfig

    counts: dict[tuple[Any, ...], tuple[int, int]] = {}
    for row in store.query(windows, windows.c.final.is_(True)):
        key = (row["key"], row["window_start"], row["window_end"])
        counts[key] = (row["size_seconds"], row["count"])
    logic = Aggregator(AggregatorConfig.from_settings(settings), store)
    topic = settings.topic("news.keyed")
    logic.assigned(sorted(p for p in store.load_offsets(STAGE) if p[0] == topic))
    outputs, _commit = logic.close_all(datetime.now(UTC))
    for _key, stat in outputs:
        size = int((stat.window_end - stat.window_start).total_seconds())
        counts[(stat.key, stat.window_start, stat.window_end)] = (size, stat.count)
    totals: dict[int, int] = {}
    for size, count in counts.values():
        totals[size] = totals.get(size, 0) + count
    return totals


def bench_aggregator(base: Any, work: Path, args: argparse.Namespace) -> None:
    from bench_stream import make_stories

    from finsent.core.records import encode
    from finsent.runtime.store import Store
    from finsent.stream.router import route

    routed = route(make_stories(args.stories))
    records = [(key.encode(), encode(point)) for key, point in routed]
    print(
        f"\n== aggregator: {args.stories:,} stories → {len(records):,} keyed points on "
        f"news.keyed ({PARTITIONS} partitions), default windows"
    )
    with stores(args.store, work) as factories:
        for kind, new_store in factories.items():
            print(f"\n  store: {kind}")
            runs: list[Run] = []
            for rep in range(args.repeats):
                for n in args.procs:
                    run_dir = work / f"aggregator-{kind}-{n}-{rep}"
                    run_dir.mkdir()
                    url = new_store(f"agg_{n}_{rep}_{uuid.uuid4().hex[:6]}")
                    settings = run_settings(base, "aggregator", n, rep, url, args.model_threads)
                    store = Store(settings.database_url)
                    try:
                        stored = partial(stored_offsets, store)
                        released, done, cpu, spread = drain(
                            "aggregator",
                            n,
                            settings,
                            run_dir,
                            args.cpus,
                            "news.keyed",
                            records,
                            stored,
                        )
                        totals = window_totals(settings, store)
                    finally:
                        store.close()
                    run = Run(n, len(records), done - released, cpu)
                    runs.append(run)
                    wrong = {s: c for s, c in totals.items() if c != len(records)}
                    check = (
                        f"every point counted once in each of {len(totals)} window sizes"
                        if len(totals) == len(settings.window_specs) and not wrong
                        else f"CHECK: points counted per window size {totals}, "
                        f"expected {len(records):,} in each of {len(settings.window_specs)}"
                    )
                    print(
                        f"  {n} process(es), run {rep + 1}: {run.rate:8,.0f} points/s over "
                        f"{run.seconds:5.1f} s; partitions {shares(spread)}; {check}",
                        flush=True,
                    )
                    if rep == 0 and n == args.procs[0]:
                        # One key per story (overall) and few topics and sources: the largest
                        # partition bounds what any number of processes can do.
                        cap = len(records) / max(spread)
                        print(f"    (the largest partition caps the speed-up at {cap:.2f}x)")
            print()
            print("\n".join("  " + line for line in table(runs, "points")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("scorer", "aggregator", "all"), default="all")
    parser.add_argument("--procs", type=parse_procs, default=(1, 2, 4), help="e.g. 1,2,4")
    parser.add_argument("--items", type=int, default=4000, help="news items for the scorer")
    parser.add_argument("--stories", type=int, default=10_000, help="for the aggregator")
    parser.add_argument("--cpus", default="", help="pin the stages: a taskset -c list, e.g. 0-1")
    parser.add_argument("--repeats", type=int, default=1, help="runs per count; medians shown")
    parser.add_argument(
        "--model-threads",
        type=int,
        default=1,
        help="per scorer process; 0: the stage's default, one per core of the machine",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres", "both"),
        default="both",
        help="the aggregators' store",
    )
    args = parser.parse_args()
    for name in ("items", "stories", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more")
    if args.model_threads < 0:
        parser.error("--model-threads must be 0 (one per core) or more")
    if args.cpus:
        try:
            cpus = parse_cpus(args.cpus)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        if shutil.which("taskset") is None:
            parser.error("--cpus needs taskset (util-linux)")
    args.store = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    print(machine_line(), flush=True)
    pinned = f"pinned to CPUs {args.cpus} ({len(cpus)})" if args.cpus else "not pinned"
    print(
        f"stage processes {pinned}; {PARTITIONS} partitions; process counts "
        f"{', '.join(map(str, args.procs))}; {args.repeats} run(s) each"
    )
    if max(args.procs) > PARTITIONS:
        print(f"(over {PARTITIONS} processes, the extra ones wait idle as standbys)")

    from bench_stream import local_broker

    with tempfile.TemporaryDirectory(prefix="finsent-bench-scaleout-") as tmp:
        work = Path(tmp)
        with local_broker(work) as base:
            if base is None:
                raise SystemExit("no broker: nothing to measure")
            if args.part in ("scorer", "all"):
                bench_scorer(base, work, args)
            if args.part in ("aggregator", "all"):
                bench_aggregator(base, work, args)


if __name__ == "__main__":
    main()
