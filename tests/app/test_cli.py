"""The ``finsent`` command: every group is there, and a user error is one line and exit 1."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from support.records import T0, alert
from typer.testing import CliRunner

from finsent.app.cli import app, main
from finsent.app.ports import free_port
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
