"""The ``finsent`` command: a thin layer that parses options and starts library code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from finsent.app.extras import extra_modules, missing_extra, require, require_scorer, require_store
from finsent.core.settings import Settings
from finsent.core.stages import consumers, stage
from finsent.runtime.process import install_stop_handlers, setup_logging


class FinsentGroup(TyperGroup):
    """Turns a missing optional extra, in any command, into one line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except ImportError as exc:
            names = []
            at: typer.Context | None = ctx
            while at is not None and at.parent is not None:
                names.append(at.info_name or "")
                at = at.parent
            command = " ".join(["finsent", *reversed(names), ctx.invoked_subcommand or ""])
            missing = missing_extra(exc, command.strip())
            if missing is None:
                raise
            typer.secho(f"error: {missing.message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


def _typer(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, cls=FinsentGroup)


app = _typer("finsent: streaming financial-news sentiment monitor.")
kafka_app = _typer("Run the local single-node Kafka broker.")
ingest_app = _typer(stage("ingest").summary)
alerts_app = _typer("List, acknowledge and silence alerts.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(ingest_app, name="ingest")
app.add_typer(alerts_app, name="alerts")
log = logging.getLogger("finsent")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("finsent")
        except PackageNotFoundError:  # run from a checkout that was never installed
            from finsent import __version__ as number
        typer.echo(f"finsent {number}")
        raise typer.Exit()


@app.callback()
def _main(
    _version_: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """finsent: streaming financial-news sentiment monitor."""


def _settings(**overrides: object) -> Settings:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    setup_logging(settings.log_level)
    return settings


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (idempotent) and create the pipeline topics."""
    from finsent.app.kafka_local import KafkaLaunchError, LocalKafka
    from finsent.runtime.kafka_io import ensure_topics

    settings = _settings()
    try:
        status = LocalKafka(settings).start()
    except KafkaLaunchError as exc:
        _fail(str(exc))
    ensure_topics(settings)
    typer.echo(status.describe())


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker started by `finsent kafka start`."""
    from finsent.app.kafka_local import LocalKafka

    stopped = LocalKafka(_settings()).stop()
    typer.echo("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs; exit 1 if it does not."""
    from finsent.app.kafka_local import LocalKafka

    status = LocalKafka(_settings()).status()
    typer.echo(status.describe())
    raise typer.Exit(0 if status.running else 1)


@app.command()
def topics() -> None:
    """Create any missing pipeline topics and list them."""
    from finsent.runtime.kafka_io import ensure_topics, list_topics

    settings = _settings()
    ensure_topics(settings)
    for name in list_topics(settings):
        typer.echo(name)


@app.command("sample-feed")
def sample_feed(
    out: Path,
    hours: float = typer.Option(6.0, help="Span of the feed, ending now."),
    seed: int = 7,
) -> None:
    """Write the generated sample feed (JSONL) with its scripted negative episode."""
    from finsent.ingest.sample_feed import generate, write_jsonl

    rows = generate(end=datetime.now(UTC).replace(microsecond=0), hours=hours, seed=seed)
    write_jsonl(rows, out)
    typer.echo(f"wrote {len(rows)} stories to {out}")


@ingest_app.command("replay")
def ingest_replay(
    path: Path,
    speed: str = typer.Option("max", help="'max', or how many times faster than real time."),
    source: str | None = typer.Option(None, help="Source name for rows that lack one."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Replay a CSV or JSONL file into news.raw in publish-time order."""
    from finsent.app.stages import SOURCES
    from finsent.ingest.replay import replay

    if not path.exists():
        _fail(f"{path} does not exist")
    try:
        factor = None if speed == "max" else float(speed)
    except ValueError:
        _fail(f"--speed takes 'max' or a number, not {speed!r}")
    settings = _settings()
    stats = replay(
        settings,
        path,
        install_stop_handlers(),
        speed=factor,
        source=source,
        progress=progress,
        admission=SOURCES["ingest"](settings),
    )
    typer.echo(
        f"read {stats.read}, sent {stats.sent}, duplicates {stats.duplicates}, dead letters "
        f"{stats.dead} (load {stats.load_seconds:.1f} s, send {stats.send_seconds:.1f} s)"
    )


@ingest_app.command("poll")
def ingest_poll(
    sources: Annotated[
        Path | None, typer.Option(help="Sources YAML (default FINSENT_SOURCES_FILE).")
    ] = None,
    example: Annotated[bool, typer.Option(help="Print an example sources file and exit.")] = False,
) -> None:
    """Poll RSS/Atom feeds and JSON news APIs into news.raw, each on its own interval."""
    from finsent.ingest.sources import SourcesError, example_sources_yaml
    from finsent.runtime.kafka_io import ensure_topics

    if example:
        typer.echo(example_sources_yaml())
        return
    from finsent.app.stages import SOURCES
    from finsent.ingest.worker import run_poller

    settings = _settings()
    ensure_topics(settings)
    try:
        run_poller(settings, install_stop_handlers(), sources, SOURCES["ingest"](settings))
    except SourcesError as exc:
        _fail(str(exc))


def _run_stage(name: str, settings: Settings) -> None:
    """Run one consuming stage until SIGTERM or Ctrl-C (``finsent.app.stages``)."""
    from finsent.app.stages import StageError, run
    from finsent.runtime.kafka_io import ensure_topics

    ensure_topics(settings)
    try:
        run(name, settings, install_stop_handlers())
    except StageError as exc:
        _fail(str(exc))


def _stage_command(name: str) -> Callable[[], None]:
    def command() -> None:
        _run_stage(name, _settings())

    return command


@app.command(help=stage("scorer").summary)
def scorer(
    name: str | None = typer.Option(None, "--scorer", help="attention (default) or lexicon"),
) -> None:
    settings = _settings(scorer=name)
    require_scorer(settings.scorer)
    _run_stage("scorer", settings)


# A command per consuming stage, named and described by its declaration; the scorer's own
# (above) takes --scorer.
for _spec in consumers():
    if _spec.name != "scorer":
        app.command(_spec.name, help=_spec.summary)(_stage_command(_spec.name))


@alerts_app.command("list")
def alerts_list(limit: int = 20) -> None:
    """The latest alerts: state, key, window, and who acknowledged them."""
    from finsent.runtime.store import Store, alerts

    store = Store(_settings().database_url)
    rows = store.query(alerts, order_by=[alerts.c.updated_at.desc()])[:limit]
    for row in rows:
        acked = f"  acked by {row['acked_by']}" if row["acked_by"] else ""
        typer.echo(
            f"{row['id']}  {row['state']:<8} {row['severity']:<8} {row['key']:<30} "
            f"{row['window_start']:%Y-%m-%d %H:%M}{acked}"
        )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: str,
    by: str = typer.Option(..., "--by", help="Who takes it on."),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Acknowledge an alert: no repeat notifications while it fires."""
    from finsent.runtime.store import Store

    if not Store(_settings().database_url).acknowledge(
        alert_id, by=by, comment=comment, at=datetime.now(UTC)
    ):
        _fail(f"no alert with id {alert_id}")
    typer.echo(f"acknowledged {alert_id} as {by}")


@alerts_app.command("silence")
def alerts_silence(
    match: str = typer.Option(..., "--match", help="Glob over series keys, e.g. 'ticker:*'."),
    duration: str = typer.Option("2h", "--for", help="How long, e.g. 30m, 2h, 1d."),
    severity: str | None = typer.Option(None, help="Only this severity (warning, critical)."),
    by: str = typer.Option(..., "--by"),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Mute notifications of matching alerts for a while (they are still detected and stored)."""
    from finsent.alerts.silences import SilenceError, new_silence
    from finsent.runtime.store import Store

    try:
        made = new_silence(
            match, duration, severity=severity, author=by, comment=comment, now=datetime.now(UTC)
        )
    except SilenceError as exc:
        _fail(str(exc))
    Store(_settings().database_url).add_silence(made.to_row())
    typer.echo(f"silence {made.id}: {made.matcher} until {made.ends_at:%Y-%m-%d %H:%M} UTC")


@app.command("evaluate-detector")
def evaluate_detector(
    nab: Path = typer.Option(..., "--nab", help="The NAB folder (data/, labels/, config/)."),
) -> None:
    """Score the anomaly detector on the Numenta Anomaly Benchmark with NAB's profiles."""
    from finsent.app.nab import main as nab_main

    if not nab.is_dir():
        _fail(f"{nab} is not a folder")
    raise typer.Exit(nab_main(nab))


@app.command()
def dashboard(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None),
) -> None:
    """Serve the Streamlit dashboard."""
    from finsent.app.demo import dashboard_command

    settings = _settings(dashboard_host=host, dashboard_port=port)
    require("streamlit", "plotly", "pandas")
    require_store(settings.database_url)
    cmd = dashboard_command(settings)
    os.execvpe(cmd[0], cmd, {**os.environ, **settings.child_env()})


@app.command()
def demo(
    speed: Annotated[str, typer.Option(help="Replay speed: 'max' or a factor.")] = "240",
    hours: Annotated[float, typer.Option(help="Hours of sample news to generate.")] = 6.0,
) -> None:
    """Start Kafka and every stage, replay the sample feed, and serve the dashboard."""
    from finsent.app.demo import run_demo
    from finsent.app.kafka_local import LaunchError

    settings = _settings()
    try:
        factor = None if speed == "max" else float(speed)
    except ValueError:
        _fail(f"--speed takes 'max' or a number, not {speed!r}")
    require_scorer(settings.scorer)
    require("streamlit", "plotly", "pandas")
    require_store(settings.database_url)
    try:
        code = run_demo(settings, install_stop_handlers(), speed=factor, hours=hours)
    except LaunchError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _when(text: str | None, option: str, end_of_day: bool = False) -> datetime | None:
    """A UTC time from ISO text; a bare date means its start (or, for --to, its end)."""
    from datetime import timedelta

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} takes an ISO date or time (2023-03-01, 2023-03-01T12:00Z), not {text!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end_of_day and len(text) == 10:  # --to 2023-03-31 includes March 31
        value += timedelta(days=1)
    return value.astimezone(UTC)


@app.command()
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
        typer.Option(help="Settings YAML for this run (as FINSENT_CONFIG), e.g. alert windows."),
    ] = None,
    keep_topics: Annotated[bool, typer.Option(help="Keep the run's Kafka topics.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Replay a historical feed through the live stages, isolated, and write a report."""
    from finsent.app.backtest import BacktestError, BacktestRequest, run_backtest
    from finsent.app.backtest_report import EventsError, fired_alerts
    from finsent.app.kafka_local import LaunchError

    try:
        factor = None if speed == "max" else float(speed)
    except ValueError:
        _fail(f"--speed takes 'max' or a number, not {speed!r}")
    request = BacktestRequest(
        feed=feed,
        since=_when(from_, "--from"),
        until=_when(to, "--to", end_of_day=True),
        speed=factor,
        run_id=run_id or "",
        report_dir=report,
        events=events,
        keep_topics=keep_topics,
    )
    if config is not None:
        if not config.is_file():
            _fail(f"config file {config} does not exist")
        os.environ["FINSENT_CONFIG"] = str(config)  # read once, by the settings below
    settings = _settings()
    require_scorer(settings.scorer)  # the scorer stage's, before minutes of replay
    require_store(settings.database_url)
    if report is not None:
        require("plotly")
    try:
        result = run_backtest(settings, request, install_stop_handlers(), progress=progress)
    except (BacktestError, EventsError, LaunchError) as exc:
        _fail(str(exc))
    fired = len(fired_alerts(result.alerts))
    typer.echo(
        f"backtest {result.run_id}: {result.stories} stories, {fired} alerts fired, "
        f"{result.seconds:.1f} s\nreport: {result.report_path}"
    )


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder for the new artifact.")] = Path(
        "runs/finsent-attn"
    ),
    data: Annotated[
        Path | None, typer.Option(help="Datasets root (default ../shared/datasets).")
    ] = None,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 32,
    encoder_lr: Annotated[float, typer.Option(help="AdamW learning rate of the encoder.")] = 1.5e-4,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop fine-tuning after this long, keeping the best.")
    ] = None,
    domain_adapt: Annotated[
        bool, typer.Option("--domain-adapt", help="MLM pretraining on unlabelled headlines first.")
    ] = False,
    adapt_steps: int = 600,
    limit: Annotated[int | None, typer.Option(help="Train on the first N examples only.")] = None,
    extra_data: Annotated[
        list[Path] | None,
        typer.Option(help="Your own labelled CSV/JSONL, added to training (repeatable)."),
    ] = None,
    text_column: str = "text",
    sentiment_column: Annotated[
        str | None, typer.Option(help="Column of negative/neutral/positive in --extra-data.")
    ] = "sentiment",
    topic_column: Annotated[
        str | None, typer.Option(help="Column of analyst topics in --extra-data.")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: all cores).")] = 0,
    progress: bool = True,
) -> None:
    """Train the attention topic-and-sentiment model and save an artifact with its model card."""
    import json

    require(*sorted(extra_modules("train")))  # before, not after, an hour of training
    from finsent.model.data import DataError, datasets_dir, load_table, standard_corpus
    from finsent.model.train import TrainConfig
    from finsent.model.train import train as run_training

    _settings()
    config = TrainConfig(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        encoder_lr=encoder_lr,
        max_minutes=max_minutes,
        domain_adapt=domain_adapt,
        adapt_steps=adapt_steps,
        limit=limit,
        threads=threads,
    )
    try:
        corpus = standard_corpus(data)
        for path in extra_data or []:
            corpus = corpus.with_extra(
                load_table(path, text_column, sentiment_column or None, topic_column)
            )
    except DataError as exc:
        _fail(str(exc))

    result = run_training(
        corpus, out, config, progress=progress, datasets_root=data or datasets_dir()
    )
    for name, tasks in result["test"].items():
        for task, metrics in tasks.items():
            typer.echo(
                f"test {name:22} {task:9} n={metrics['n']:5} accuracy {metrics['accuracy']:.4f}"
                f"  macro-F1 {metrics['macro_f1']:.4f}"
            )
    typer.echo(f"artifact: {out} ({result['total_seconds']:.0f} s)")
    typer.echo(
        json.dumps(result.get("domain_adaptation", {})) if domain_adapt else "", nl=domain_adapt
    )


@app.command()
def evaluate(
    artifact: Annotated[
        Path | None, typer.Option(help="Artifact folder (default: shipped).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Datasets root (default ../shared/datasets).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Optimized form: auto, onnx-int8, torch-int8.")
    ] = "auto",
    baselines: Annotated[bool, typer.Option(help="Also run the baselines.")] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every figure here.")
    ] = None,
    threads: int = 0,
) -> None:
    """Accuracy, macro-F1 and confusion matrices: the model beside the baselines, same splits."""
    import json

    from finsent.model.data import DataError, standard_corpus
    from finsent.model.evaluate import evaluate as run_evaluation
    from finsent.model.evaluate import render

    _settings()  # a bad setting fails before the long load
    try:
        corpus = standard_corpus(data)
    except DataError as exc:
        _fail(str(exc))
    result = run_evaluation(
        corpus,
        artifact_path=artifact,
        backend=backend,
        baselines=baselines,
        threads=threads,
        say=lambda line: typer.echo(line, err=True),
    )
    render(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    app(prog_name="finsent")


if __name__ == "__main__":
    sys.exit(main())
