"""``finsent kafka start|stop|status`` (the local broker) and ``finsent topics``."""

from __future__ import annotations

import typer

from finsent.app.cli.common import fail, load_settings, new_app

PANEL = "Kafka"
kafka_app = new_app("Run the local single-node Kafka broker.")


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (idempotent) and create the pipeline topics."""
    from finsent.app.kafka_local import KafkaLaunchError, LocalKafka
    from finsent.runtime.kafka_io import ensure_topics

    settings = load_settings()
    try:
        status = LocalKafka(settings).start()
    except KafkaLaunchError as exc:
        fail(str(exc))
    ensure_topics(settings)
    typer.echo(status.describe())


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker started by `finsent kafka start`."""
    from finsent.app.kafka_local import LocalKafka

    stopped = LocalKafka(load_settings()).stop()
    typer.echo("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs; exit 1 if it does not."""
    from finsent.app.kafka_local import LocalKafka

    status = LocalKafka(load_settings()).status()
    typer.echo(status.describe())
    raise typer.Exit(0 if status.running else 1)


def topics() -> None:
    """Create any missing pipeline topics and list them."""
    from finsent.runtime.kafka_io import check_broker, ensure_topics, list_topics

    settings = load_settings()
    check_broker(settings.bootstrap_servers)
    ensure_topics(settings)
    for name in list_topics(settings):
        typer.echo(name)


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka", rich_help_panel=PANEL)
    app.command(rich_help_panel=PANEL)(topics)
