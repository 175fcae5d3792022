"""`finsent demo`: Kafka, every stage and the dashboard on one machine, fed by the sample feed.

Each stage runs as its own process, as in production. Ctrl-C (or SIGTERM) stops them all,
newest first, then the broker if the demo started it, leaving no process or bound port behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from finsent.app.kafka_local import LaunchError, LocalKafka
from finsent.app.launch import finsent_command, python_command
from finsent.app.ports import port_open
from finsent.app.supervisor import Supervisor
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


def this_cli() -> str:
    """How to run finsent as this process was: the venv's script (relative to here, when it is
    under it), else ``python -m finsent``."""
    script = Path(sys.executable).with_name("finsent")
    if not script.exists():
        return f"{sys.executable} -m finsent"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def say(message: str) -> None:
    """Console output that never breaks shutdown, even when stdout is a closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


def run_demo(settings: Settings, stop: threading.Event, speed: float | None, hours: float) -> int:
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
    children = Supervisor({**os.environ, **settings.child_env()}, run_dir / "logs")
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
        replayer = children.start("replay", replay_cmd, one_shot=True)
        pace = "as fast as possible" if speed is None else f"at {speed:g}x real time"
        cli = this_cli()
        say(
            f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}\n"
            f"replaying {len(rows)} sample stories ({hours:g} h of news) {pace}\n"
            f"stage logs: {children.log_dir}\n"
            "correct headlines on the dashboard (Headlines, Review queue), then retrain on them;\n"
            "the scorer switches to a promoted model between batches:\n"
            f"  FINSENT_STORE_URL={settings.database_url} {cli} retrain\n"
            f"  FINSENT_STORE_URL={settings.database_url} {cli} model rollback\n"
            "Ctrl-C stops everything."
        )
        reported: set[tuple[str, str, datetime]] = set()  # (alert id, state, window start)
        last_status = None
        replay_done = False
        while not stop.wait(2.0):
            for name, code in children.dead():
                tail = children.log_tail(name)
                say(f"{name} exited unexpectedly (code {code}); its log ends:\n{tail}")
                return 1
            if not replay_done and replayer.poll() is not None:
                replay_done = True
                say(f"replay finished (exit {replayer.returncode}); the dashboard stays up.")
            n_scored, n_windows = store.count(scored_items), store.count(windows)
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
