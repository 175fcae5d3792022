"""``finsent check``: the set-up doctor (``finsent.app.doctor``) on the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from finsent.app.cli.common import OPERATE_PANEL, load_settings

PANEL = OPERATE_PANEL


def check(
    fetch_once: Annotated[
        bool,
        typer.Option(
            "--fetch-once",
            help="Also fetch and parse each source once; nothing is sent or remembered.",
        ),
    ] = False,
    send_test: Annotated[
        bool,
        typer.Option("--send-test", help="Also send one marked test notification to each channel."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the whole set-up, and say how to fix what is wrong.

    Prints the effective settings (secrets masked), then ✓ or ✗ with the fix for the broker,
    store, model, sources, rules, Slack, email, partitions and disk. Exit code 1 if anything
    is ✗."""
    from rich.console import Console
    from rich.markup import escape

    from finsent.app.doctor import CheckResult, effective_settings, run_checks

    settings = load_settings()
    rows = effective_settings(settings)
    if as_json:
        results = run_checks(settings, fetch_once=fetch_once, send_test=send_test)
        ok = all(r.ok for r in results)
        report = {
            "ok": ok,
            "settings": [asdict(row) for row in rows],
            "checks": [asdict(r) for r in results],
        }
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        raise typer.Exit(0 if ok else 1)

    # soft_wrap: long values stay on one line, whole, for grep and copy-paste.
    console = Console(soft_wrap=True, highlight=False)
    console.print("[bold]Settings[/] (bold: given; dim: default)")
    for row in rows:
        style = "bold" if row.given else "dim"
        console.print(f"  [{style}]{escape(row.env)}[/] = {escape(row.value)}")
    console.print()
    console.print("[bold]Checks[/]")

    def show(result: CheckResult) -> None:
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        console.print(f"  {mark} [bold]{escape(result.name)}[/]: {escape(result.detail)}")
        if not result.ok and result.fix:
            console.print(f"      [yellow]fix:[/] {escape(result.fix)}")

    results = run_checks(settings, fetch_once=fetch_once, send_test=send_test, progress=show)
    failed = [r.name for r in results if not r.ok]
    console.print()
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} checks failed:[/] {', '.join(failed)}")
        raise typer.Exit(1)
    console.print(f"[green]all {len(results)} checks passed[/]")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(check)
