"""``finsent check``: the settings with secrets masked, ✓/✗ with fixes, the exit code, JSON, and
the two options that reach out (``--fetch-once``, ``--send-test``) against loopback servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.feed_server import FeedServer, Route, item, rss
from support.notify_loopback import WebhookServer
from typer.testing import CliRunner

from finsent.app.cli import app
from finsent.app.kafka_local import LocalKafka
from finsent.app.ports import free_port
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics

runner = CliRunner()
TOKEN = "cliWebhookSeCrEt4c0ffee99"
PASSWORD = "cli-smtp-PaSsW0rd-77d"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment of its own: cache under ``tmp_path``, no broker, the lexicon scorer."""
    monkeypatch.setenv("FINSENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FINSENT_KAFKA_PORT", str(free_port()))
    monkeypatch.setenv("FINSENT_SCORER", "lexicon")
    return tmp_path


def test_a_broken_set_up_prints_crosses_with_fixes_and_exits_1(env: Path) -> None:
    result = runner.invoke(app, ["check"])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    broker = next(i for i, line in enumerate(lines) if "✗ broker:" in line)
    assert "fix:" in lines[broker + 1] and "finsent kafka start" in lines[broker + 1]
    assert "✓ store:" in result.output
    assert f"FINSENT_CACHE_DIR = {env / 'cache'}" in result.output
    assert "checks failed: broker, partitions" in lines[-1]


def test_secrets_never_appear_in_the_output(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_SLACK_WEBHOOK_URL", f"https://hooks.slack.com/services/T/B/{TOKEN}")
    monkeypatch.setenv("FINSENT_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv(
        "FINSENT_STORE_URL", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/db"
    )

    for args in (["check"], ["check", "--json"], ["check", "--send-test"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert TOKEN not in result.output and PASSWORD not in result.output, args
        # The channel was checked, not skipped.
        assert ('"name": "slack"' if "--json" in args else "✗ slack:") in result.output

    assert "FINSENT_SLACK_WEBHOOK_URL = set (hidden)" in runner.invoke(app, ["check"]).output


def test_json_output_is_one_object_for_scripts(env: Path) -> None:
    result = runner.invoke(app, ["check", "--json"])

    report = json.loads(result.output)
    assert result.exit_code == 1 and report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["broker"]["ok"] is False and "finsent kafka start" in checks["broker"]["fix"]
    assert checks["store"] == {
        "name": "store",
        "ok": True,
        "detail": checks["store"]["detail"],
        "fix": "",
    }
    settings = {s["env"]: s for s in report["settings"]}
    assert settings["FINSENT_SCORER"] == {
        "env": "FINSENT_SCORER",
        "value": "lexicon",
        "given": True,
    }


def test_send_test_posts_one_marked_message_to_the_webhook(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookServer() as slack:
        monkeypatch.setenv("FINSENT_SLACK_WEBHOOK_URL", slack.url(f"/services/T/B/{TOKEN}"))
        quiet = runner.invoke(app, ["check"])
        assert slack.received == []  # without --send-test, nothing is posted
        result = runner.invoke(app, ["check", "--send-test"])

    (posted,) = slack.accepted
    assert "TEST finsent-check" in posted.json()["text"]
    assert "✓ slack: test notification sent to 127.0.0.1" in result.output
    assert TOKEN not in quiet.output + result.output


def test_fetch_once_reports_each_source(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = rss(item("Bank shares slide", pub="Tue, 02 Jan 2024 10:00:00 GMT"))
    with FeedServer() as server:
        sources = env / "sources.yaml"
        url = server.add("/feed.xml", Route(feed))
        sources.write_text(
            f"sources:\n  - {{name: wire, url: '{url}', kind: rss, allow_private_network: true}}\n"
        )
        monkeypatch.setenv("FINSENT_SOURCES_FILE", str(sources))
        plain = runner.invoke(app, ["check"])
        assert server.hits("/feed.xml") == []
        result = runner.invoke(app, ["check", "--fetch-once"])

    assert "✓ sources:" in plain.output and "source wire" not in plain.output
    assert "✓ source wire: fetched" in result.output and "1 stories parsed" in result.output


def test_a_missing_sources_file_is_a_cross_with_its_fix(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_SOURCES_FILE", str(env / "nope.yaml"))

    result = runner.invoke(app, ["check"])

    assert "✗ sources:" in result.output and "finsent ingest poll --example" in result.output


@pytest.mark.kafka
def test_a_working_set_up_exits_0(
    env: Path, monkeypatch: pytest.MonkeyPatch, kafka_broker: LocalKafka
) -> None:
    monkeypatch.setenv("FINSENT_KAFKA_PORT", str(kafka_broker.port))
    monkeypatch.setenv("FINSENT_TOPIC_PREFIX", "check-cli.")
    ensure_topics(Settings.load())

    result = runner.invoke(app, ["check"])

    assert result.exit_code == 0, result.output
    assert "✓ partitions:" in result.output and "all " in result.output.splitlines()[-1]
