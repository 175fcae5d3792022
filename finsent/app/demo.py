"""`finsent demo`: Kafka, every stage and the dashboard on one machine, fed by the sample feed.

Each stage runs as its own process, as in production. Ctrl-C (or SIGTERM) stops them all,
newest first, then the broker if the demo started it, leaving no process or bound port behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from finsent.app.kafka_local import LaunchError, LocalKafka, port_open
from finsent.app.launch import finsent_command, python_command
from finsent.core.settings import Settings
from finsent.core.stages import consumers
from finsent.runtime.kafka_io import delete_topics, ensure_topics, list_topics

log = logging.getLogger(__name__)
# Every consuming stage, as its own process; the replay below is the ingest.
STAGES = tuple(spec.name for spec in consumers())


def dashboard_command(settings: Settings) -> list[str]:
    spec = importlib.util.find_spec("finsent.dashboard.app")
    if spec is None or spec.origin is None:
        raise RuntimeError("the dashboard is not installed; install finsent[dashboard]")
    app_path = spec.origin
    return [
        *python_command("-m", "streamlit", "run", app_path),
        "--server.address", settings.dashboard_host,
        "--server.port", str(settings.dashboard_port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def demo_settings(settings: Settings, run_id: str, run_dir: Path) -> Settings:
    """Isolate the run: its own topic prefix and, unless a store URL is given, its own store."""
    update: dict[str, object] = {"topic_prefix": settings.topic_prefix or f"demo-{run_id}."}
    if not settings.store_url:
        update["store_url"] = f"sqlite:///{run_dir / 'finsent.db'}"
    if not settings.idle_close_seconds:
        update["idle_close_seconds"] = 60.0  # the last windows close once the feed goes quiet
    return settings.model_copy(update=update)


def say(message: str) -> None:
    """Console output that never breaks shutdown, even when stdout is a closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


class Children:
    """The stage processes, each logging to its own file, stopped in reverse start order."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stopped: set[str] = set()  # stopped on purpose, not dead

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log_file:
            # A session of its own: the terminal's Ctrl-C reaches the demo only, which then stops
            # the children in order; logs go to files so a closed console cannot wedge a child.
            proc = subprocess.Popen(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc))
        log.info("started %s (pid %d)", name, proc.pid)
        return proc

    def dead(self) -> list[tuple[str, int]]:
        return [
            (n, p.returncode)
            for n, p in self.procs
            if p.poll() is not None and n != "replay" and n not in self.stopped
        ]

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_one(self, name: str, timeout_s: float = 20) -> int:
        """Stop one child cleanly (SIGTERM, then SIGKILL after the timeout); its exit code."""
        for child, proc in self.procs:
            if child == name:
                self.stopped.add(name)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    return proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", name)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    return proc.wait()
        raise KeyError(name)

    def stop_all(self, timeout_s: float = 20) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                log.info("stopping %s", name)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
            # Whatever is left of the stage, and anything it spawned, goes now.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_demo(settings: Settings, stop: threading.Event, speed: float | None, hours: float) -> int:
    from sqlalchemy import func, select

    from finsent.ingest.sample_feed import generate, write_jsonl
    from finsent.runtime.store import Store, alert_events, scored_items, windows

    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    run_dir = settings.cache_dir / "demo" / run_id
    settings = demo_settings(settings, run_id, run_dir)
    if port_open(settings.dashboard_host, settings.dashboard_port):
        raise LaunchError(
            f"port {settings.dashboard_host}:{settings.dashboard_port} is already in use; "
            "stop what holds it or set FINSENT_DASHBOARD_PORT"
        )
    kafka = LocalKafka(settings)
    started_kafka = not kafka.status().running
    say(f"finsent demo {run_id}: starting Kafka at {settings.bootstrap_servers} ...")
    kafka.start()
    children = Children({**os.environ, **settings.child_env()}, run_dir / "logs")
    try:
        stale = [
            t
            for t in list_topics(settings)
            if t.startswith("demo-") and not t.startswith(settings.topic_prefix)
        ]
        delete_topics(settings, stale)  # earlier demo runs
        ensure_topics(settings)
        rows = generate(end=datetime.now(UTC).replace(microsecond=0), hours=hours)
        feed = write_jsonl(rows, run_dir / "sample.jsonl")
        store = Store(settings.database_url)
        for stage in STAGES:
            children.start(stage, finsent_command(stage))
        children.start("dashboard", dashboard_command(settings))
        replay_cmd = finsent_command("ingest", "replay", str(feed), "--no-progress",
                                     "--speed", "max" if speed is None else str(speed))  # fmt: skip
        replayer = children.start("replay", replay_cmd)
        pace = "as fast as possible" if speed is None else f"at {speed:g}x real time"
        say(
            f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}\n"
            f"replaying {len(rows)} sample stories ({hours:g} h of news) {pace}\n"
            f"stage logs: {children.log_dir}\n"
            "Ctrl-C stops everything."
        )
        reported: set[tuple] = set()
        last_status = None
        replay_done = False
        while not stop.wait(2.0):
            for name, code in children.dead():
                say(
                    f"{name} exited unexpectedly (code {code}); its log ends:\n{children.log_tail(name)}"
                )
                return 1
            if not replay_done and replayer.poll() is not None:
                replay_done = True
                say(f"replay finished (exit {replayer.returncode}); the dashboard stays up.")
            with store.engine.connect() as conn:
                n_scored = conn.execute(select(func.count()).select_from(scored_items)).scalar()
                n_windows = conn.execute(select(func.count()).select_from(windows)).scalar()
            status = f"scored {n_scored}/{len(rows)} stories, {n_windows} windows closed"
            if status != last_status:
                say(status)
                last_status = status
            for row in store.query(alert_events, order_by=[alert_events.c.at]):
                event = (row["alert_id"], row["state"], row["window_start"])
                if event not in reported:
                    reported.add(event)
                    say(f"ALERT {row['state']}: {row['payload']['message']}")
        return 0
    finally:
        say("stopping ...")
        children.stop_all()
        if started_kafka:
            kafka.stop()
        say("demo stopped.")
