"""``finsent alerts list|ack|silence`` and ``finsent evaluate-detector``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from finsent.app.cli.common import fail, load_settings, new_app

PANEL = "Alerts"
alerts_app = new_app("List, acknowledge and silence alerts.")


def alert_line(row: dict[str, Any]) -> str:
    """One stored alert as a line of ``finsent alerts list``."""
    acked = f"  acked by {row['acked_by']}" if row["acked_by"] else ""
    return (
        f"{row['id']}  {row['state']:<8} {row['severity']:<8} {row['key']:<30} "
        f"{row['window_start']:%Y-%m-%d %H:%M}{acked}"
    )


@alerts_app.command("list")
def alerts_list(limit: int = 20) -> None:
    """The latest alerts: state, key, window, and who acknowledged them."""
    from finsent.runtime.store import Store

    for row in Store(load_settings().database_url).latest_alerts(limit):
        typer.echo(alert_line(row))


@alerts_app.command("ack")
def alerts_ack(
    alert_id: str,
    by: str = typer.Option(..., "--by", help="Who takes it on."),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Acknowledge an alert: no repeat notifications while it fires."""
    from finsent.runtime.store import Store

    store = Store(load_settings().database_url)
    if not store.acknowledge(alert_id, by=by, comment=comment, at=datetime.now(UTC)):
        fail(f"no alert with id {alert_id}")
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
        fail(str(exc))
    Store(load_settings().database_url).add_silence(made.to_row())
    typer.echo(f"silence {made.id}: {made.matcher} until {made.ends_at:%Y-%m-%d %H:%M} UTC")


def evaluate_detector(
    nab: Path = typer.Option(..., "--nab", help="The NAB folder (data/, labels/, config/)."),
) -> None:
    """Score the anomaly detector on the Numenta Anomaly Benchmark with NAB's profiles."""
    from finsent.app.nab import main as nab_main

    if not nab.is_dir():
        fail(f"{nab} is not a folder")
    raise typer.Exit(nab_main(nab))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts", rich_help_panel=PANEL)
    app.command("evaluate-detector", rich_help_panel=PANEL)(evaluate_detector)
