"""``finsent alerts list|export|ack|silence|silences|unsilence`` and ``finsent
evaluate-detector``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from finsent.app.cli.choices import ExportFormat, SilenceSeverity
from finsent.app.cli.common import (
    BACKTEST_PANEL,
    OPERATE_PANEL,
    fail,
    load_settings,
    new_app,
    write_or_echo,
)
from finsent.core.safety import spreadsheet_cell

if TYPE_CHECKING:
    from finsent.alerts.silences import Silence
    from finsent.runtime.store import Store

alerts_app = new_app("List, export, acknowledge and silence alerts.")

# The columns of an exported alert, in order: its identity and state, the evidence, the ack.
EXPORT_COLUMNS = (
    "id",
    "key",
    "state",
    "severity",
    "rule",
    "window_start",
    "window_end",
    "neg_share",
    "weighted_neg_share",
    "weighted_count",
    "mean_score",
    "baseline_score",
    "baseline_mean",
    "baseline_std",
    "zscore",
    "count",
    "started_at",
    "updated_at",
    "acked_by",
    "acked_at",
    "ack_comment",
    "message",
    "headlines",
)
JSON_OPTION = typer.Option("--json", help="Print JSON (an array of objects) instead of lines.")


def alert_line(row: dict[str, Any]) -> str:
    """One stored alert as a line of ``finsent alerts list``."""
    acked = f"  acked by {row['acked_by']}" if row["acked_by"] else ""
    return (
        f"{row['id']}  {row['state']:<8} {row['severity']:<8} {row['key']:<30} "
        f"{row['window_start']:%Y-%m-%d %H:%M}{acked}"
    )


def alert_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as plain JSON values: times in ISO 8601 UTC, headlines as stored."""
    from finsent.runtime.store import as_utc

    return {
        name: as_utc(row[name]).isoformat() if isinstance(row[name], datetime) else row[name]
        for name in EXPORT_COLUMNS
    }


def alerts_json(rows: Iterable[dict[str, Any]]) -> str:
    return json.dumps([alert_record(row) for row in rows], indent=2, ensure_ascii=False)


def alerts_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The alerts as CSV, one row each; headlines as their titles joined by `` | ``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = alert_record(row)
        record["headlines"] = " | ".join(str(h.get("title", "")) for h in record["headlines"])
        # Keys, comments and headlines come from outside: a cell must never run as a formula.
        writer.writerow({k: "" if v is None else spreadsheet_cell(v) for k, v in record.items()})
    return out.getvalue()


def open_store() -> Store:
    from finsent.runtime.store import Store

    return Store(load_settings().database_url)


@alerts_app.command("list")
def alerts_list(
    limit: Annotated[int, typer.Option(help="How many, the latest first.")] = 20,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """The latest alerts: state, key, window, and who acknowledged them."""
    rows = open_store().latest_alerts(limit)
    if as_json:
        typer.echo(alerts_json(rows))
    elif not rows:
        typer.echo("no alerts")
    else:
        typer.echo("\n".join(alert_line(row) for row in rows))


@alerts_app.command("export")
def alerts_export(
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="csv (headlines as titles) or json.")
    ] = ExportFormat.csv,
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (default: standard output).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, the latest first.")] = 10_000,
) -> None:
    """Every stored alert with its evidence and acknowledgement, as CSV or JSON."""
    rows = open_store().latest_alerts(limit)
    text = alerts_csv(rows) if format_ is ExportFormat.csv else alerts_json(rows) + "\n"
    write_or_echo(text, out, f"{len(rows)} alerts")


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see `alerts list`).")],
    by: str = typer.Option(..., "--by", help="Who takes it on."),
    comment: str = typer.Option("", "--comment", help="Why, or what is being done."),
) -> None:
    """Acknowledge an alert: no repeat notifications while it fires."""
    if not open_store().acknowledge(alert_id, by=by, comment=comment, at=datetime.now(UTC)):
        fail(f"no alert with id {alert_id}")
    typer.echo(f"acknowledged {alert_id} as {by}")


@alerts_app.command("silence")
def alerts_silence(
    match: str = typer.Option(..., "--match", help="Glob over series keys, e.g. 'ticker:*'."),
    duration: str = typer.Option("2h", "--for", help="How long, e.g. 30m, 2h, 1d."),
    severity: SilenceSeverity = typer.Option(
        SilenceSeverity.any, help="Only alerts of this severity."
    ),
    by: str = typer.Option(..., "--by", help="Who silences it."),
    comment: str = typer.Option("", "--comment", help="Why."),
) -> None:
    """Mute notifications of matching alerts for a while (they are still detected and stored)."""
    from finsent.alerts.silences import SilenceError, new_silence

    try:
        made = new_silence(
            match,
            duration,
            severity=severity.value,
            author=by,
            comment=comment,
            now=datetime.now(UTC),
        )
    except SilenceError as exc:
        fail(str(exc))
    open_store().add_silence(made.to_row())
    typer.echo(f"silence {made.id}: {made.matcher} until {made.ends_at:%Y-%m-%d %H:%M} UTC")


def silence_line(silence: Silence) -> str:
    """One active silence as a line of ``finsent alerts silences``."""
    comment = f"  {silence.comment}" if silence.comment else ""
    return (
        f"{silence.id}  {silence.matcher:<30} {silence.severity or 'any':<8} "
        f"until {silence.ends_at:%Y-%m-%d %H:%M} UTC  by {silence.created_by}{comment}"
    )


def silence_records(silences: Sequence[Silence]) -> str:
    return json.dumps(
        [
            {**s.to_row(), "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()}
            for s in silences
        ],
        indent=2,
        ensure_ascii=False,
    )


@alerts_app.command("silences")
def alerts_silences(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """The silences in force, ending soonest first."""
    from finsent.alerts.silences import active_silences

    now = datetime.now(UTC)
    silences = active_silences(open_store().active_silences(now), now)
    if as_json:
        typer.echo(silence_records(silences))
    elif not silences:
        typer.echo("no active silences")
    else:
        typer.echo("\n".join(silence_line(silence) for silence in silences))


@alerts_app.command("unsilence")
def alerts_unsilence(
    silence_id: Annotated[str, typer.Argument(help="The silence's id (see `alerts silences`).")],
) -> None:
    """Expire a silence now: matching alerts are notified again."""
    from finsent.alerts.silences import SilenceError, expire_silence

    now = datetime.now(UTC)
    store = open_store()
    try:
        ended = expire_silence(store.active_silences(now), silence_id, now)
    except SilenceError as exc:
        fail(str(exc))
    store.add_silence(ended.to_row())
    typer.echo(f"expired silence {ended.id}: {ended.matcher}")


def evaluate_detector(
    nab: Path | None = typer.Option(
        None, "--nab", help="The NAB folder (data/, labels/, config/): score it on NAB."
    ),
    run: str | None = typer.Option(
        None, "--run", help="A backtest run (id or folder): replay its windows through it."
    ),
    events: Path | None = typer.Option(
        None, "--events", help="Known events (YAML) to score the replayed alerts against."
    ),
    show_alerts: bool = typer.Option(False, "--alerts", help="List the replayed alerts."),
    explain: str | None = typer.Option(
        None, "--explain", help="A series key (ticker:CS): why it fired or not, window by window."
    ),
    since: str | None = typer.Option(None, "--since", help="With --explain: from (ISO time)."),
    until: str | None = typer.Option(None, "--until", help="With --explain: to (ISO time)."),
) -> None:
    """Score the alerter's detector: on the Numenta Anomaly Benchmark (its univariate form)
    and on a backtest's windows against known events, with the current alert settings."""
    if events is not None and run is None:
        fail("--events scores a replayed run: give --run RUN too")
    if (explain is not None or since or until) and run is None:
        fail("--explain replays a run: give --run RUN too")
    if nab is None and run is None:
        fail("give --nab DIR, --run RUN, or both")
    if run is not None:
        from finsent.app.backtest_report import EventsError, load_events
        from finsent.app.detector_eval import fired_rows, render, replay_detector, run_store

        settings = load_settings()
        try:
            known = load_events(events) if events is not None else None
        except EventsError as exc:
            fail(str(exc))
        if explain is not None:
            from finsent.app.detector_eval import explain_series

            lines = explain_series(
                settings,
                run_store(settings, run),
                explain,
                _utc_time(since, "--since"),
                _utc_time(until, "--until"),
            )
            typer.echo("\n".join(lines))
            return
        result = replay_detector(settings, run_store(settings, run), known)
        typer.echo(render(result))
        if show_alerts:
            typer.echo("\n".join(fired_rows(result.alerts)))
    if nab is not None:
        from finsent.app.nab import main as nab_main

        if not nab.is_dir():
            fail(f"{nab} is not a folder")
        code = nab_main(nab)
        if code:
            raise typer.Exit(code)


def _utc_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not an ISO time (2023-03-15 or 2023-03-15T11:00)")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts", rich_help_panel=OPERATE_PANEL)
    app.command("evaluate-detector", rich_help_panel=BACKTEST_PANEL)(evaluate_detector)
