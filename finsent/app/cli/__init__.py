"""The ``finsent`` command: a thin layer that parses options, builds the request for library
code, runs it and prints the outcome. One module per command group; each registers its
commands on ``app``. A user error is one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from finsent.app.cli import (
    alerts,
    check,
    ingest,
    kafka,
    labels,
    model,
    registry,
    retrain,
    runs,
    stages,
)
from finsent.app.cli.choices import LogLevel
from finsent.app.cli.common import PANELS, FinsentGroup, GlobalOptions

if TYPE_CHECKING:
    from typer._click import Context as ClickContext


class RootGroup(FinsentGroup):
    """Lists its commands panel by panel, in the order of ``PANELS``, whatever order the
    modules register them in (typer lists commands before groups)."""

    def list_commands(self, ctx: ClickContext) -> list[str]:
        def panel(name: str) -> int:
            found = getattr(self.commands[name], "rich_help_panel", None)
            return PANELS.index(found) if found in PANELS else len(PANELS)

        return sorted(super().list_commands(ctx), key=panel)  # stable: keeps each panel's order


app = typer.Typer(
    help="finsent: streaming financial-news sentiment monitor.",
    no_args_is_help=True,
    cls=RootGroup,
)


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
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings YAML for this command and the processes it starts "
            "(instead of FINSENT_CONFIG).",
            dir_okay=False,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, help="Log level (instead of FINSENT_LOG_LEVEL)."),
    ] = None,
    _version_: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """finsent: streaming financial-news sentiment monitor."""
    # Read by load_settings, which every command builds its settings with.
    ctx.obj = GlobalOptions(config=config, log_level=log_level.value if log_level else None)


# The help lists them panel by panel (RootGroup); within a panel, in this order.
for group in (stages, ingest, kafka, alerts, runs, model, retrain, registry, labels, check):
    group.register(app)


def main(args: Sequence[str] | None = None) -> None:
    """The console entry point; ``args`` default to the command line."""
    app(args=list(args) if args is not None else None, prog_name="finsent")
