"""``finsent ingest poll|replay``, the two feeds of the ingest stage, and ``finsent
sample-feed``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from finsent.app.cli.common import (
    BACKTEST_PANEL,
    STAGES_PANEL,
    fail,
    load_settings,
    new_app,
    parse_speed,
    ready_topics,
)
from finsent.core.stages import stage
from finsent.runtime.process import install_stop_handlers, settle_collector

if TYPE_CHECKING:
    from finsent.ingest.admit import Admission

ingest_app = new_app(stage("ingest").summary)


@ingest_app.command("replay")
def ingest_replay(
    path: Annotated[Path, typer.Argument(help="The feed: CSV or JSONL.")],
    speed: str = typer.Option("max", help="'max', or how many times faster than real time."),
    source: str | None = typer.Option(None, help="Source name for rows that lack one."),
    progress: bool = typer.Option(True, help="Show progress bars on stderr."),
    fresh: bool = typer.Option(
        False, help="Ignore the dedup memory: send stories replayed before again."
    ),
) -> None:
    """Replay a CSV or JSONL file into news.raw in publish-time order."""
    from contextlib import nullcontext

    from finsent.app.stages import SOURCES
    from finsent.ingest.replay import (
        memory_location,
        nothing_sent_reason,
        replay,
        throwaway_admission,
    )
    from finsent.runtime.kafka_io import check_broker

    if not path.exists():
        fail(f"{path} does not exist")
    factor = parse_speed(speed)
    settings = load_settings()
    # --fresh: an empty dedup memory of its own, so nothing counts as replayed before.
    logic = throwaway_admission(settings) if fresh else nullcontext(SOURCES["ingest"](settings))
    with logic as admission:
        with closed_on_error(admission):  # the dedup memory is checked before Kafka
            check_broker(settings.bootstrap_servers)
        settle_collector()
        stats = replay(
            settings,
            path,
            install_stop_handlers(),
            speed=factor,
            source=source,
            progress=progress,
            admission=admission,
        )
    typer.echo(
        f"read {stats.read}, sent {stats.sent}, duplicates {stats.duplicates}, dead letters "
        f"{stats.dead} (read {stats.load_seconds:.1f} s, then normalize, dedup and send "
        f"{stats.send_seconds:.1f} s)"
    )
    reason = nothing_sent_reason(stats, memory_location(settings.ingest_database_url))
    if reason:
        typer.echo(reason)


@ingest_app.command("poll")
def ingest_poll(
    sources: Annotated[
        Path | None, typer.Option(help="Sources YAML (default FINSENT_SOURCES_FILE).")
    ] = None,
    example: Annotated[bool, typer.Option(help="Print an example sources file and exit.")] = False,
) -> None:
    """Poll RSS/Atom feeds and JSON news APIs into news.raw, each on its own interval."""
    from finsent.ingest.sources import example_sources_yaml, load_sources

    if example:
        typer.echo(example_sources_yaml())
        return
    from finsent.app.stages import SOURCES
    from finsent.ingest.worker import run_poller

    settings = load_settings()
    path = sources or settings.sources_file
    if path is None:
        fail(
            "no sources file: pass --sources or set FINSENT_SOURCES_FILE "
            "(`finsent ingest poll --example` prints one)"
        )
    load_sources(path)  # the file's problems (SourcesError: one line), before the broker
    admission = SOURCES["ingest"](settings)  # the dedup memory: a store, checked before Kafka
    with closed_on_error(admission):
        ready_topics(settings)  # the broker (5 s), then the topics
    settle_collector()
    run_poller(settings, install_stop_handlers(), path, admission)


@contextmanager
def closed_on_error(admission: Admission) -> Iterator[None]:
    """Close ``admission`` (its store) if the block raises; else the feed closes it at its end."""
    try:
        yield
    except BaseException:
        admission.close()
        raise


def sample_feed(
    out: Annotated[Path, typer.Argument(help="The JSONL file to write.")],
    hours: float = typer.Option(6.0, help="Span of the feed, ending now."),
    seed: int = typer.Option(7, help="Seed of the generator: the same seed, the same stories."),
) -> None:
    """Write the generated sample feed (JSONL) with its scripted negative episode."""
    from finsent.ingest.sample_feed import generate, write_jsonl

    rows = generate(end=datetime.now(UTC).replace(microsecond=0), hours=hours, seed=seed)
    write_jsonl(rows, out)
    typer.echo(f"wrote {len(rows)} stories to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest", rich_help_panel=STAGES_PANEL)
    app.command("sample-feed", rich_help_panel=BACKTEST_PANEL)(sample_feed)
