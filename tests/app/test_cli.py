"""The ``finsent`` command: every group is there, and a user error is one line and exit 1."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from support.records import T0, alert
from typer.testing import CliRunner

import finsent.app.cli.common
from finsent.alerts.silences import ANY_SEVERITY
from finsent.app.cli import app, main
from finsent.app.cli.choices import Backend, LogLevel, ScorerName, SilenceSeverity
from finsent.app.cli.common import PANELS
from finsent.app.ports import free_port
from finsent.core.vocabulary import SEVERITIES
from finsent.model.infer import BACKENDS
from finsent.model.scorer import SCORERS
from finsent.runtime.store import Commit, Store

runner = CliRunner()


def one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_help_lists_every_group_and_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        *("kafka", "topics", "ingest", "sample-feed", "scorer", "router", "aggregator"),
        *("alerter", "notifier", "alerts", "evaluate-detector", "dashboard", "demo"),
        *("backtest", "train", "evaluate"),
    ):
        assert command in result.output


def test_main_takes_its_arguments_instead_of_reading_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("finsent ")


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1
    assert "does not exist" in one_error_line(result.output)


def test_a_second_replay_says_why_it_sent_nothing_and_fresh_sends_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import finsent.ingest.replay as replay_module
    from finsent.core.stages import stage
    from finsent.runtime.runner import SourceRunner
    from finsent.runtime.testing import CollectingSink, MemoryDeadLetters

    sent = CollectingSink()
    monkeypatch.setattr(
        replay_module.SourceRunner,
        "kafka",
        lambda *_, **__: SourceRunner(
            stage("ingest"), producer=sent, dead=MemoryDeadLetters("ingest"), sink_topic="raw"
        ),
    )
    monkeypatch.setenv("FINSENT_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path))
    # The sink is in memory: no broker to check.
    monkeypatch.setattr("finsent.runtime.kafka_io.check_broker", lambda *_, **__: None)
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        "\n".join(
            json.dumps({"title": f"Bank story {n}", "url": f"https://n.test/{n}"}) for n in (1, 2)
        )
    )
    replay = ["ingest", "replay", str(feed), "--no-progress"]

    first = runner.invoke(app, replay)
    assert first.exit_code == 0 and "sent 2," in first.output
    assert "seen before" not in first.output

    again = runner.invoke(app, replay)
    assert again.exit_code == 0 and "sent 0," in again.output
    memory = tmp_path / "store-ingest.db"
    assert (
        f"sent 0 of 2 stories: all were seen before (dedup memory at {memory}); "
        "use --fresh to replay them again"
    ) in again.output

    fresh = runner.invoke(app, [*replay, "--fresh"])
    assert fresh.exit_code == 0 and "sent 2," in fresh.output
    assert len(sent.values("raw")) == 4  # the first replay's two, and the fresh one's


@pytest.mark.parametrize(
    ("speed", "message"),
    [("fast", "--speed takes 'max' or a number"), ("0", "'max' or a positive number")],
)
def test_bad_speed_is_a_clear_error(tmp_path: Path, speed: str, message: str) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    result = runner.invoke(app, ["ingest", "replay", str(feed), "--speed", speed])
    assert result.exit_code == 1
    assert message in one_error_line(result.output)


def test_an_invalid_setting_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINSENT_KAFKA_PORT", "not-a-port")
    result = runner.invoke(app, ["kafka", "status"])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith("error: invalid settings: FINSENT_KAFKA_PORT: ")
    assert "'not-a-port'" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("windows: [15m\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("smtp_password: hunter2\n", "secrets must come from the environment"),
    ],
)
def test_a_bad_config_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    config = tmp_path / "finsent.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    monkeypatch.setenv("FINSENT_CONFIG", str(config))
    result = runner.invoke(app, ["kafka", "status"])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith(f"error: config file {config}") or "secrets" in line
    assert message in line
    assert "hunter2" not in result.output


def test_kafka_status_says_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FINSENT_KAFKA_PORT", str(free_port()))
    result = runner.invoke(app, ["kafka", "status"])
    assert result.exit_code == 1
    assert "Kafka not running at 127.0.0.1:" in result.output


def test_sample_feed_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    result = runner.invoke(app, ["sample-feed", str(out), "--hours", "2"])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert f"wrote {len(lines)} stories" in result.output and len(lines) > 50


def test_backtest_refuses_a_bad_period_and_a_missing_feed(tmp_path: Path) -> None:
    result = runner.invoke(app, ["backtest", "--feed", str(tmp_path), "--from", "March"])
    assert result.exit_code == 1 and "--from takes an ISO date" in one_error_line(result.output)
    period = ["--from", "2023-03-02", "--to", "2023-03-01"]
    result = runner.invoke(app, ["backtest", "--feed", str(tmp_path), *period])
    assert result.exit_code == 1 and "must be before --to" in one_error_line(result.output)
    result = runner.invoke(app, ["backtest", "--feed", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_alerts_list_prints_the_latest_alerts_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    store = Store(url)
    older = alert(id="old1", key="ticker:AAA", window_start=T0)
    newer = alert(id="new1", key="ticker:BBB", window_start=T0 + timedelta(hours=1))
    store.commit(Commit(stage="alerter", alerts=[older, newer]))
    store.acknowledge("old1", by="ana", comment="", at=T0 + timedelta(hours=2))
    store.close()

    result = runner.invoke(app, ["alerts", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["new1", "old1"]
    assert "ticker:BBB" in lines[0] and f"{newer.window_start:%Y-%m-%d %H:%M}" in lines[0]
    assert lines[1].endswith("acked by ana")

    result = runner.invoke(app, ["alerts", "list", "--limit", "1"])
    assert result.output.split()[0] == "new1" and len(result.output.splitlines()) == 1


def test_acknowledging_an_unknown_alert_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    result = runner.invoke(app, ["alerts", "ack", "nope", "--by", "ana"])
    assert result.exit_code == 1
    assert "no alert with id nope" in one_error_line(result.output)


# -- conventions: version, help, panels, choices, the root's options -----------------------


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group below ``command``, with its path of names."""
    for name, sub in getattr(command, "commands", {}).items():
        yield (*path, name), sub
        yield from commands(sub, (*path, name))


ROOT = typer.main.get_command(app)


def test_version_is_the_installed_packages() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"finsent {version('finsent')}\n"


def test_every_command_option_and_argument_has_help() -> None:
    missing = [
        " ".join(("finsent", *path, param.name or ""))
        for path, command in [((), ROOT), *commands(ROOT)]
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    missing += [" ".join(path) for path, command in commands(ROOT) if not command.help]

    assert len(list(commands(ROOT))) > 25  # the walk sees the whole tree
    assert missing == []


def test_every_command_sits_in_a_panel_and_the_help_lists_them_in_order() -> None:
    panels = {
        name: getattr(command, "rich_help_panel", None) for name, command in ROOT.commands.items()
    }
    assert {name: p for name, p in panels.items() if p not in PANELS} == {}
    assert set(panels.values()) == set(PANELS)

    output = runner.invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    assert [output.index(f"─ {panel} ") for panel in PANELS] == sorted(
        output.index(f"─ {panel} ") for panel in PANELS
    )


def test_the_choices_are_the_librarys() -> None:
    assert tuple(ScorerName) == SCORERS
    assert tuple(Backend) == BACKENDS
    assert set(SilenceSeverity) == {ANY_SEVERITY, *SEVERITIES}
    assert all(logging.getLevelName(level.value) != f"Level {level.value}" for level in LogLevel)


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["scorer", "--scorer", "bert"], "'attention', 'lexicon'"),
        (["evaluate", "--backend", "gpu"], "'auto', 'onnx-int8', 'torch-int8', 'torch-fp32'"),
        (["alerts", "silence", "--match", "x", "--by", "a", "--severity", "fatal"], "'any'"),
        (["alerts", "export", "--format", "xml"], "'csv', 'json'"),
        (["--log-level", "loud", "kafka", "status"], "'debug', 'info'"),
    ],
)
def test_a_value_outside_the_choices_is_refused_before_the_command_runs(
    monkeypatch: pytest.MonkeyPatch, args: list[str], choices: str
) -> None:
    def no_settings(*_: object, **__: object) -> None:
        raise AssertionError("the command ran")

    monkeypatch.setattr(finsent.app.cli.common.Settings, "load", no_settings)
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "is not one of" in result.output and choices in result.output


def test_the_roots_config_and_log_level_reach_the_commands_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    config = tmp_path / "finsent.yaml"
    config.write_text(f"kafka_port: {port}\ncache_dir: {tmp_path}\n", encoding="utf-8")
    levels: list[str] = []
    monkeypatch.setattr(
        finsent.app.cli.common, "setup_logging", lambda level, kafka: levels.append(level)
    )
    monkeypatch.setenv("FINSENT_LOG_LEVEL", "ERROR")

    result = runner.invoke(
        app, ["--config", str(config), "--log-level", "debug", "kafka", "status"]
    )
    assert f"Kafka not running at 127.0.0.1:{port}" in result.output
    assert levels == ["DEBUG"]  # the option beats the environment

    result = runner.invoke(app, ["kafka", "status"])  # nothing is left over from the last run
    assert f"127.0.0.1:{port}" not in result.output and levels[-1] == "ERROR"


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.yaml"), "kafka", "status"])
    assert result.exit_code == 1
    assert (
        one_error_line(result.output)
        == f"error: config file {tmp_path / 'nope.yaml'} does not exist"
    )


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_missing_datasets_folder_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # No --data and no FINSENT_DATASETS_DIR: the user's data folder, which is not there yet.
    monkeypatch.delenv("FINSENT_DATASETS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    result = runner.invoke(app, [command])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert f"datasets folder {tmp_path / 'finsent' / 'datasets'} not found" in line
    assert "--data DIR or set FINSENT_DATASETS_DIR" in line

    result = runner.invoke(app, [command, "--data", str(tmp_path / "nope")])
    assert f"datasets folder {tmp_path / 'nope'} not found" in one_error_line(result.output)


def test_unknown_encoders_and_teachers_are_one_line_before_any_download(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--encoder", "gpt"])
    assert result.exit_code == 1
    assert one_error_line(result.output) == (
        "error: unknown encoder 'gpt'; one of: bge-small, e5-small"
    )
    result = runner.invoke(app, ["train", "--hold-out-source", "bloomberg"])
    assert one_error_line(result.output) == (
        "error: unknown --hold-out-source bloomberg; one of: reuters-guardian, rss-2023"
    )
    (tmp_path / "config.json").write_text('{"format": 2}', encoding="utf-8")
    for command in ("train", "evaluate"):
        result = runner.invoke(app, [command, "--teacher", str(tmp_path)])
        assert result.exit_code == 1
        assert one_error_line(result.output) == (
            f"error: {tmp_path} is not a teacher folder (train one with --encoder)"
        )


# -- One line per user error, before the broker is asked (issue 19) --------------------------
# Each stage command runs in process against a port nothing listens on: a local mistake must
# be reported before the broker is, and the missing broker within seconds.


@pytest.fixture
def no_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Settings for a run with nothing on the bootstrap address; returns that address."""
    port = free_port()
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FINSENT_KAFKA_PORT", str(port))
    return f"127.0.0.1:{port}"


def fails_in_one_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return one_error_line(result.output)


@pytest.mark.parametrize(
    "args",
    [["router"], ["notifier"], ["topics"], ["ingest", "replay", "FEED"]],
    ids=["stage", "stage-with-rules", "topics", "replay"],
)
def test_no_broker_is_one_line_within_seconds(
    no_broker: str, tmp_path: Path, args: list[str]
) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("", encoding="utf-8")
    started = time.monotonic()
    line = fails_in_one_line([str(feed) if a == "FEED" else a for a in args])
    assert time.monotonic() - started < 10  # was a minute of client errors, then a traceback
    assert line == (
        f"error: Kafka at {no_broker} is not reachable; start it with `finsent kafka start` "
        "or set FINSENT_KAFKA_BOOTSTRAP"
    )


@pytest.mark.parametrize(
    ("variable", "value", "command", "says"),
    [
        ("FINSENT_WINDOWS", "15x", "aggregator", "bad window '15x'"),
        ("FINSENT_STORE_URL", "foo://x/y", "router", "unknown database 'foo'"),
        ("FINSENT_SCORER", "nope", "scorer", "unknown scorer 'nope': set FINSENT_SCORER"),
    ],
)
def test_a_bad_setting_of_a_stage_is_one_line_naming_it(
    no_broker: str,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    command: str,
    says: str,
) -> None:
    monkeypatch.setenv(variable, value)
    line = fails_in_one_line([command])
    assert variable in line and says in line
    assert "Kafka" not in line


def test_a_config_file_that_is_not_there_names_its_variable(
    no_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_CONFIG", str(tmp_path / "finsent.yml"))
    line = fails_in_one_line(["router"])
    assert f"config file {tmp_path / 'finsent.yml'} cannot be read" in line
    assert "fix FINSENT_CONFIG" in line


def test_a_store_folder_that_is_not_there_is_refused_unless_asked(
    no_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "typo" / "dir"
    monkeypatch.setenv("FINSENT_STORE_URL", f"sqlite:///{folder / 'x.db'}")
    for args in (["router"], ["alerts", "list"]):
        line = fails_in_one_line(args)
        assert line.startswith("error: invalid settings: FINSENT_STORE_URL: ")
        assert f"the folder {folder} does not exist" in line
        assert "FINSENT_STORE_CREATE_DIRS=true" in line
    assert not folder.exists()  # no empty store where the user did not mean one

    monkeypatch.setenv("FINSENT_STORE_CREATE_DIRS", "true")
    result = runner.invoke(app, ["alerts", "list"])
    assert result.exit_code == 0, result.output
    assert (folder / "x.db").is_file()


def test_an_unreachable_postgres_store_is_one_line_without_its_password(
    no_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://finsent:hunter2@127.0.0.1:{free_port()}/finsent"
    monkeypatch.setenv("FINSENT_STORE_URL", url)
    line = fails_in_one_line(["router"])
    assert line.startswith("error: the store at postgresql+psycopg://finsent:***@127.0.0.1:")
    assert "cannot be opened" in line and "Check FINSENT_STORE_URL" in line
    assert "hunter2" not in line


def test_a_store_driver_that_is_not_installed_is_one_line(
    no_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if it were not installed
    monkeypatch.setenv("FINSENT_STORE_URL", "postgresql+psycopg2://me:hunter2@db/finsent")
    line = fails_in_one_line(["router"])
    assert "needs the driver 'psycopg2', which is not installed" in line
    assert "postgresql+psycopg://" in line and "hunter2" not in line


def test_a_missing_extra_of_a_stage_is_named_before_the_broker(
    no_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setenv("FINSENT_STORE_URL", "postgresql+psycopg://me@db/finsent")
    line = fails_in_one_line(["router"])
    assert line == (
        "error: finsent router needs the 'postgres' extra (no module named 'psycopg'): "
        "pip install 'finsent[postgres]'"
    )


def test_a_bad_model_artifact_names_its_variable(
    no_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_MODEL_ARTIFACT", str(tmp_path))
    line = fails_in_one_line(["scorer"])
    assert line.startswith(f"error: FINSENT_MODEL_ARTIFACT: no model artifact at {tmp_path}")
    assert "`finsent train`" in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read (No such file or directory): fix FINSENT_ALERT_RULES_FILE"),
        ("channels: [unclosed\n", "is not valid YAML at line 2, column 1"),
        ("routes: [{channels: [nowhere]}]\n", "unknown channel"),
    ],
)
def test_a_bad_rules_file_is_one_line_naming_it(
    no_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, says: str
) -> None:
    rules = tmp_path / "rules.yaml"
    if content is not None:
        rules.write_text(content, encoding="utf-8")
    monkeypatch.setenv("FINSENT_ALERT_RULES_FILE", str(rules))
    line = fails_in_one_line(["alerter"])
    assert str(rules) in line and says in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read (No such file or directory): fix --sources"),
        ("just a string\n", "expected a list of sources"),
        ("sources: [unclosed\n", "not valid YAML at line 2, column 1"),
    ],
)
def test_a_bad_sources_file_is_one_line_before_the_broker(
    no_broker: str, tmp_path: Path, content: str | None, says: str
) -> None:
    sources = tmp_path / "sources.yaml"
    if content is not None:
        sources.write_text(content, encoding="utf-8")
    line = fails_in_one_line(["ingest", "poll", "--sources", str(sources)])
    assert str(sources) in line and says in line


def test_ingest_poll_without_a_sources_file_says_how_to_name_one(no_broker: str) -> None:
    line = fails_in_one_line(["ingest", "poll"])
    assert "pass --sources or set FINSENT_SOURCES_FILE" in line
