"""Whole runs on one machine: ``finsent demo``, ``finsent dashboard`` and ``finsent
backtest``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from finsent.app.cli.common import (
    BACKTEST_PANEL,
    OPERATE_PANEL,
    fail,
    load_settings,
    parse_speed,
)
from finsent.app.extras import require, require_scorer, require_store
from finsent.runtime.process import install_stop_handlers, settle_collector


def dashboard(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8501)."),
) -> None:
    """Serve the Streamlit dashboard."""
    from finsent.app.demo import dashboard_command

    settings = load_settings(dashboard_host=host, dashboard_port=port)
    require("streamlit", "plotly", "pandas")
    require_store(settings.database_url)
    cmd = dashboard_command(settings)
    # Streamlit takes over this process: its pid is the dashboard's, and signals reach it.
    os.execvpe(cmd[0], cmd, {**os.environ, **settings.child_env()})


def demo(
    speed: Annotated[str, typer.Option(help="Replay speed: 'max' or a factor.")] = "240",
    hours: Annotated[float, typer.Option(help="Hours of sample news to generate.")] = 6.0,
) -> None:
    """Start Kafka and every stage, replay the sample feed, and serve the dashboard."""
    from finsent.app.demo import run_demo
    from finsent.app.kafka_local import LaunchError

    settings = load_settings()
    factor = parse_speed(speed)
    require_scorer(settings.scorer)
    require("streamlit", "plotly", "pandas")
    require_store(settings.database_url)
    try:
        code = run_demo(settings, install_stop_handlers(), speed=factor, hours=hours)
    except LaunchError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def backtest(
    feed: Annotated[Path, typer.Option(help="The feed to replay: CSV, JSONL or an RSS archive.")],
    from_: Annotated[
        str | None, typer.Option("--from", help="Only stories published from this time (UTC).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="Only stories published before this time; a date includes its day."),
    ] = None,
    speed: Annotated[str, typer.Option(help="'max', or how many times real time.")] = "max",
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run (default: time+feed).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Folder for the HTML and CSV report.")] = None,
    events: Annotated[
        Path | None, typer.Option(help="Known events (YAML: name, key, start, end) to score.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Settings YAML for this run, e.g. alert windows (as the global --config)."
        ),
    ] = None,
    keep_topics: Annotated[bool, typer.Option(help="Keep the run's Kafka topics.")] = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="Score with this registered model version (`finsent model list`); "
            "default: the one the scorers run now. The report records it."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Replay a historical feed through the live stages, isolated, and write a report."""
    from finsent.app.backtest import BacktestError, BacktestRequest, parse_period, run_backtest
    from finsent.app.backtest_report import EventsError, fired_alerts
    from finsent.app.kafka_local import LaunchError

    factor = parse_speed(speed)
    try:
        since, until = parse_period(from_, to)
    except BacktestError as exc:
        fail(str(exc))
    request = BacktestRequest(
        feed=feed,
        since=since,
        until=until,
        speed=factor,
        run_id=run_id or "",
        report_dir=report,
        events=events,
        keep_topics=keep_topics,
        model=model,
    )
    settings = load_settings(config_file=config)  # the stages get it through child_env()
    require_scorer(settings.scorer)  # the scorer stage's, before minutes of replay
    require_store(settings.database_url)
    if report is not None:
        require("plotly")
    try:
        settle_collector()  # the replay and the drain run in this process
        result = run_backtest(settings, request, install_stop_handlers(), progress=progress)
    except (BacktestError, EventsError, LaunchError) as exc:
        fail(str(exc))
    fired = len(fired_alerts(result.alerts))
    typer.echo(
        f"backtest {result.run_id}: {result.stories} stories, {fired} alerts fired, "
        f"{result.seconds:.1f} s\nreport: {result.report_path}"
    )


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=OPERATE_PANEL)(demo)
    app.command(rich_help_panel=OPERATE_PANEL)(dashboard)
    app.command(rich_help_panel=BACKTEST_PANEL)(backtest)
