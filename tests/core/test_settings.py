from __future__ import annotations

import logging
from pathlib import Path

import pytest

from finsent.core.settings import Settings


def test_env_builds_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_KAFKA_PORT", "19999")
    monkeypatch.setenv("FINSENT_ALERT_KEYS", "overall, topic:*")
    monkeypatch.setenv("FINSENT_TOPIC_PREFIX", "bt1.")
    s = Settings()
    assert s.bootstrap_servers == "127.0.0.1:19999"
    assert s.controller_port == 20000
    assert s.alert_keys == ("overall", "topic:*")
    assert s.topic("news.raw") == "bt1.news.raw"
    with pytest.raises(KeyError):
        s.topic("news.other")


def test_child_env_round_trips_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_SLACK_WEBHOOK_URL", "https://hooks.example/very-secret")
    s = Settings(partitions_per_topic={"news.raw": 6}, alert_keys=("ticker:*",))
    env = s.child_env()
    assert "FINSENT_SLACK_WEBHOOK_URL" not in env
    for key in list(env):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("FINSENT_SLACK_WEBHOOK_URL")
    again = Settings()
    assert again.partitions_for("news.raw") == 6
    assert again.alert_keys == ("ticker:*",)
    assert again.model_dump(exclude={"slack_webhook_url"}) == s.model_dump(
        exclude={"slack_webhook_url"}
    )


def test_secrets_never_print(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FINSENT_SMTP_PASSWORD", "hunter2-secret")
    s = Settings()
    logging.getLogger("t").warning("settings: %s %r", s, s)
    assert "hunter2-secret" not in repr(s) + str(s) + caplog.text
    assert s.smtp_password is not None and s.smtp_password.get_secret_value() == "hunter2-secret"


def test_config_file_cannot_hold_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "finsent.yaml"
    config.write_text("windows: [5m, 1h/5m]\ngrace_seconds: 30\n")
    monkeypatch.setenv("FINSENT_CONFIG", str(config))
    assert Settings().windows == ("5m", "1h/5m") and Settings().grace_seconds == 30
    config.write_text("smtp_password: oops\n")
    with pytest.raises(ValueError, match="secrets must come from the environment"):
        Settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.kafka_port = 1  # type: ignore[misc]


def test_window_specs_are_checked_on_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_WINDOWS", "15m, 1h/5m")
    settings = Settings()
    assert [s.name for s in settings.window_specs] == ["15m", "1h/5m"]
    assert settings.alert_window_spec.name == "15m"  # the first, unless alert_window says
    monkeypatch.setenv("FINSENT_WINDOWS", "15m,1h/7m")
    with pytest.raises(ValueError, match="the hop must divide the size"):
        Settings()
