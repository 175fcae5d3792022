"""The ``finsent`` command: a thin layer that parses options, builds the request for library
code, runs it and prints the outcome. One module per command group; each registers its
commands on ``app``. A user error is one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from finsent.app.cli import alerts, check, ingest, kafka, model, runs, stages
from finsent.app.cli.common import new_app

app = new_app("finsent: streaming financial-news sentiment monitor.")


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


# In the order of the help's panels: the pipeline's stages first, then its tools.
for group in (stages, ingest, kafka, alerts, runs, model, check):
    group.register(app)


def main(args: Sequence[str] | None = None) -> None:
    """The console entry point; ``args`` default to the command line."""
    app(args=list(args) if args is not None else None, prog_name="finsent")
