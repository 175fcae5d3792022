"""A command per consuming stage (``finsent scorer``, ``router``, ...), named and described by
its declaration in ``finsent.core.stages``; each runs the stage until SIGTERM or Ctrl-C.

Ingest, the source stage, has a group of its own (``finsent ingest``, ``cli/ingest.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from finsent.app.cli.choices import ScorerName
from finsent.app.cli.common import STAGES_PANEL, load_settings
from finsent.app.extras import require_scorer
from finsent.core.settings import Settings
from finsent.core.stages import StageSpec, consumers
from finsent.runtime.process import install_stop_handlers


def run_stage(name: str, settings: Settings) -> None:
    """Run one consuming stage until SIGTERM or Ctrl-C (``finsent.app.stages``). It checks its
    store, model and rules before the broker, and the broker before making its topics; what is
    wrong is one line (``FinsentGroup``)."""
    from finsent.app.stages import run

    run(name, settings, install_stop_handlers())


def scorer(
    name: ScorerName | None = typer.Option(
        None, "--scorer", help="The model (default: FINSENT_SCORER, else attention)."
    ),
) -> None:
    settings = load_settings(scorer=name.value if name else None)
    require_scorer(settings.scorer)  # the scorer's extra, before the broker is asked
    run_stage("scorer", settings)


def _plain_stage(name: str) -> Callable[[], None]:
    def command() -> None:
        run_stage(name, load_settings())

    return command


def _command(spec: StageSpec) -> Callable[..., None]:
    """The stage's command: the scorer's takes --scorer; the others take no options."""
    return scorer if spec.name == "scorer" else _plain_stage(spec.name)


def register(app: typer.Typer) -> None:
    for spec in consumers():  # in pipeline order
        app.command(spec.name, help=spec.summary, rich_help_panel=STAGES_PANEL)(_command(spec))
