"""What the command groups share: the group class that turns a user error (a missing extra, a
bad setting, any ``UserError`` the library raises) into one line, the help's panels, the
settings every command starts from (with the root's ``--config`` and ``--log-level``), and the
one way a command fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import ValidationError
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from finsent.app.extras import missing_extra
from finsent.core.errors import UserError, hide_password
from finsent.core.settings import Settings
from finsent.runtime.process import setup_logging

if TYPE_CHECKING:
    # typer vendors click: its own Context is what TyperGroup.invoke is declared with.
    from typer._click import Context as ClickContext


class FinsentGroup(TyperGroup):
    """Turns a missing optional extra, a setting that does not validate, or a ``UserError``
    (a bad file, setting or address, named with its fix) in any command below it into one line
    on stderr and exit code 1 instead of a traceback."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except ImportError as exc:
            missing = missing_extra(exc, _command_line(ctx))
            if missing is None:
                raise  # not an extra's module: a bug, keep its traceback
            fail(missing.message)
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            fail(f"invalid settings: {settings_problems(exc)}")
        except UserError as exc:
            fail(exc.line)


def _command_line(ctx: ClickContext) -> str:
    """``finsent <group> <command>`` of the command that ``ctx`` (a group's) is invoking."""
    names = []
    at: ClickContext | None = ctx
    while at is not None and at.parent is not None:
        names.append(at.info_name or "")
        at = at.parent
    return " ".join(["finsent", *reversed(names), ctx.invoked_subcommand or ""]).strip()


def settings_problems(exc: ValidationError) -> str:
    """Each invalid setting as its environment variable, the problem and the value given, in
    one line. A database URL's password is not shown."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"FINSENT_{field.upper()}" if field else "settings"
        given = error.get("input")
        shown = hide_password(given) if isinstance(given, str) else given
        message = str(error["msg"]).removeprefix("Value error, ")  # pydantic's own prefix
        problems.append(f"{name}: {message} (got {shown!r})")
    return "; ".join(problems)


def new_app(help: str) -> typer.Typer:
    """A command group: help when called bare, extras and settings errors as one line."""
    return typer.Typer(help=help, no_args_is_help=True, cls=FinsentGroup)


# The help's panels, in this order; every command sits in one (tests/app/test_cli.py).
STAGES_PANEL = "Pipeline stages"
OPERATE_PANEL = "Operate"
MODEL_PANEL = "Model"
BACKTEST_PANEL = "Backtest"
PANELS = (STAGES_PANEL, OPERATE_PANEL, MODEL_PANEL, BACKTEST_PANEL)


@dataclass(frozen=True)
class GlobalOptions:
    """The root's ``--config`` and ``--log-level`` (None: not given), kept on the root
    context for ``load_settings``: the library never reads the command line."""

    config: Path | None = None
    log_level: str | None = None


def global_options() -> GlobalOptions:
    """The options the running ``finsent`` command line gave its root (none outside one)."""
    ctx = get_current_context(silent=True)
    given = ctx.find_root().obj if ctx is not None else None
    return given if isinstance(given, GlobalOptions) else GlobalOptions()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """This process's settings, with the options a command was given (None: not given), the
    root's ``--log-level``, and its config file: ``config_file``, else the root's
    ``--config``, else the one FINSENT_CONFIG names, if any. Child processes get the same
    through ``Settings.child_env``."""
    root = global_options()
    given = {k: v for k, v in overrides.items() if v is not None}
    if root.log_level is not None:
        given.setdefault("log_level", root.log_level)
    config_file = config_file or root.config
    if config_file is not None and not config_file.is_file():
        fail(f"config file {config_file} does not exist")
    settings = Settings.load(config_file, **given)
    setup_logging(settings.log_level, settings.kafka_log_level)
    return settings


def ready_topics(settings: Settings) -> None:
    """Check the broker (one line within 5 s when it is not there), then create or grow the
    pipeline topics; a keyed topic asked to grow is a ``PartitionCountError``, one line too."""
    from finsent.runtime.kafka_io import check_broker, ensure_topics

    check_broker(settings.bootstrap_servers)
    ensure_topics(settings)


def fail(message: str) -> NoReturn:
    """A user error: one red line on stderr, exit code 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def parse_speed(text: str) -> float | None:
    """A ``--speed`` option: ``max`` (None: as fast as the stages go) or a factor of real time."""
    if text == "max":
        return None
    try:
        factor = float(text)
    except ValueError:
        fail(f"--speed takes 'max' or a number, not {text!r}")
    if not factor > 0:  # also refuses nan
        fail(f"--speed takes 'max' or a positive number, not {text!r}")
    return factor


def write_or_echo(text: str, out: Path | None, written: str) -> None:
    """``text`` on stdout, or into the file ``out`` and then ``wrote <written> to <out>``; a
    file that cannot be written is one line."""
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {written} to {out}")
