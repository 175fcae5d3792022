"""The README's table of what runs says what the stage registry and the CLI say: every stage
with its command and metrics port, and no command or option the CLI does not have."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from finsent.app.cli import app
from finsent.core.stages import STAGES, consumers

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE_HEAD = "| Stage | Command | What it does | Metrics port |"
NO_PORT = "—"


def table_rows() -> list[tuple[str, str, str]]:
    """(stage, command, metrics port) of each row of the table of what runs."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(TABLE_HEAD) + 2  # past the head and its rule
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        # A cell's own "|" is escaped as "\|"; split on the others.
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        stage, command, _what, port = cells
        rows.append((stage, command.strip("`"), port))
    return rows


def alternatives(command: str) -> list[str]:
    """``a|b c [--x y|z]`` → ``["a", "b c [--x y|z]"]``: the "|" outside brackets."""
    parts, depth, current = [], 0, ""
    for char in command:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def cli() -> Any:
    return typer.main.get_command(app)


def options_of(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_stage_is_in_the_table_with_its_command_and_metrics_port() -> None:
    rows = table_rows()
    for spec in consumers():
        [port] = [
            port for _, command, port in rows if command.split()[:2] == ["finsent", spec.name]
        ]
        assert port == str(spec.port), spec.name
    ingest = next(spec for spec in STAGES if spec.source is None)
    feeds = {
        command.split()[2]: port for _, command, port in rows if command.split()[1] == ingest.name
    }
    assert feeds == {"poll": str(ingest.port), "replay": str(ingest.port)}
    # Only the stages' rows carry a port: every other row says it has none.
    assert sorted(int(port) for _, _, port in rows if port != NO_PORT) == sorted(
        [*(spec.port for spec in consumers()), ingest.port, ingest.port]
    )


@pytest.mark.parametrize("row", table_rows(), ids=lambda row: row[0])
def test_each_command_and_option_in_the_table_is_the_clis(row: tuple[str, str, str]) -> None:
    _stage, command, _port = row
    program, name, *_ = command.split()
    assert program == "finsent"
    assert name in cli().commands, f"no command {name!r}"
    top = cli().commands[name]
    rest = command.removeprefix(f"finsent {name}").strip()
    if not hasattr(top, "commands"):  # a plain command: its options
        assert set(re.findall(r"--[a-z][a-z-]*", rest)) <= options_of(top), command
        return
    named = []
    for alternative in alternatives(rest):  # a group: "sub [options]|sub [options]"
        sub, *args = alternative.split()
        assert sub in top.commands, f"no command 'finsent {name} {sub}'"
        options = set(re.findall(r"--[a-z][a-z-]*", " ".join(args)))
        assert options <= options_of(top.commands[sub]), alternative
        named.append(sub)
    if name != "ingest":  # ingest's two feeds have a row each
        assert sorted(named) == sorted(top.commands), f"finsent {name}: {sorted(top.commands)}"


def test_every_command_of_the_cli_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in cli().commands if f"finsent {name}" not in text]
    assert not missing, f"commands the README does not mention: {missing}"


def test_the_metrics_port_setting_gives_the_stages_range() -> None:
    ports = [spec.port for spec in STAGES]
    row = next(
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `FINSENT_METRICS_PORT` |")
    )
    assert f"per stage ({min(ports)}–{max(ports)})" in row
    assert len(set(ports)) == len(ports) == max(ports) - min(ports) + 1  # one each, no gaps
