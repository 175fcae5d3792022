"""``finsent retrain`` and ``finsent retrainer``: a candidate from analysts' corrections, its
gate against the running model, and the schedule that runs it."""

from __future__ import annotations

import getpass
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from finsent.app.cli.common import MODEL_PANEL, fail, load_settings
from finsent.app.extras import extra_modules, require

if TYPE_CHECKING:
    from finsent.core.settings import Settings
    from finsent.model.retrain import RetrainConfig, RetrainResult

log = logging.getLogger(__name__)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): say where it came from
        return "cli"


def run_retrain(
    settings: Settings, config: RetrainConfig, by: str, progress: bool
) -> RetrainResult:
    from finsent.app.retrainer import utc_now
    from finsent.model.data import DataError, standard_corpus
    from finsent.model.gate import GateRule
    from finsent.model.registry import ModelRegistry, RegistryConfig
    from finsent.model.retrain import retrain
    from finsent.runtime.store import Store

    try:
        corpus = standard_corpus(settings.datasets_dir)
    except DataError as exc:
        fail(str(exc))
    store = Store(settings.database_url)
    try:
        registry = ModelRegistry(store, RegistryConfig.from_settings(settings))
        return retrain(
            store,
            registry,
            corpus,
            config,
            GateRule.from_settings(settings),
            now=utc_now(),
            by=by,
            progress=progress,
        )
    finally:
        store.close()


def render(result: RetrainResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gate: {result.version} against {result.parent}")
    for column in ("check", "current", "candidate", "Δ", "needs", ""):
        table.add_column(column, justify="left" if column in ("check", "needs") else "right")
    for check in result.decision.checks:
        table.add_row(
            check.name,
            f"{check.current:.4f}",
            f"{check.candidate:.4f}",
            f"{check.delta:+.4f}",
            check.needed,
            "ok" if check.passed else "FAIL",
        )
    console = Console()
    console.print(table)
    verdict = "PASSED" if result.decision.passed else "REFUSED"
    for reason in result.decision.reasons:
        console.print(f"{verdict}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if result.promoted:
        line = f"promoted {result.version}: the scorers switch to it within a poll"
    elif result.decision.passed:
        line = f"{result.version} passed; promote it with `finsent model promote {result.version}`"
    else:
        line = f"{result.version} registered as refused; {result.parent} stays active"
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"trained on {result.trained_on} corrections, judged on {result.held_out}; "
        f"{result.seconds['total']:.0f} s",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def retrain(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Datasets folder (default FINSENT_DATASETS_DIR, else the user data dir)."
        ),
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who promotes (default: your login name).")] = None,
    promote: Annotated[
        bool | None,
        typer.Option(
            "--promote/--no-promote",
            help="Promote a candidate that passes (default FINSENT_RETRAIN_AUTO_PROMOTE).",
        ),
    ] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Passes over the base data (FINSENT_RETRAIN_EPOCHS).")
    ] = None,
    base_examples: Annotated[
        int | None,
        typer.Option(
            help="Base examples replayed beside the corrections (FINSENT_RETRAIN_BASE_EXAMPLES)."
        ),
    ] = None,
    eval_limit: Annotated[
        int | None, typer.Option(help="Gate on the first N texts of each fixed split.")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop fine-tuning after this long; the gate still runs.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (0: all cores).")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the gate's report here.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a candidate on the corrections, gate it against the running model, register it,
    and promote it if it passes."""
    require(*sorted(extra_modules("train")))
    from finsent.model.retrain import RetrainConfig

    settings = load_settings(datasets_dir=data)
    overrides = {
        "auto_promote": promote,
        "epochs": epochs,
        "base_examples": base_examples,
        "eval_limit": eval_limit,
        "max_minutes": max_minutes,
        "threads": threads,
    }
    config = RetrainConfig.from_settings(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    result = run_retrain(settings, config, by or _user(), progress)
    render(result)
    if json_out is not None:
        payload = {
            "version": result.version,
            "parent": result.parent,
            "promoted": result.promoted,
            "trained_on": result.trained_on,
            "held_out": result.held_out,
            "seconds": result.seconds,
            **result.decision.report(),
        }
        json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def retrainer(
    once: Annotated[
        bool, typer.Option("--once", help="Check now (and retrain if due), then exit.")
    ] = False,
) -> None:
    """Retrain on a schedule (FINSENT_RETRAIN_SCHEDULE, cron in UTC) when at least
    FINSENT_RETRAIN_MIN_CORRECTIONS stories were corrected since the last candidate."""
    require(*sorted(extra_modules("train")))
    from finsent.app.retrainer import RetrainerConfig, new_corrections, run_scheduled, trigger
    from finsent.model.retrain import RetrainConfig
    from finsent.runtime.store import Store

    settings = load_settings()
    config = RetrainerConfig.from_settings(settings)
    trigger(config)  # a bad cron expression is one line now, not a log line later

    def job() -> None:
        store = Store(settings.database_url)
        try:
            count = new_corrections(store.label_history(), store.model_versions())
            if count < config.min_corrections:
                log.info(
                    "retrainer: %d new corrected stories, %d needed: not retraining",
                    count,
                    config.min_corrections,
                )
                return
        finally:
            store.close()
        log.info("retrainer: %d new corrected stories: retraining", count)
        try:
            result = run_retrain(
                settings, RetrainConfig.from_settings(settings), "retrainer", False
            )
        except Exception:  # noqa: BLE001 - the schedule outlives one bad run
            log.exception("retrainer: the run failed; the next one is on schedule")
            return
        log.info(
            "retrainer: %s %s (%s); promoted: %s",
            result.version,
            "passed" if result.decision.passed else "refused",
            "; ".join(result.decision.reasons),
            result.promoted,
        )

    if once:
        job()
        return
    stop = threading.Event()
    try:
        run_scheduled(config, job, stop)
    except KeyboardInterrupt:
        stop.set()


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=MODEL_PANEL)(retrain)
    app.command(rich_help_panel=MODEL_PANEL)(retrainer)
