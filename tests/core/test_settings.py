from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from finsent.core.settings import Settings, secret_from_env


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


def test_a_config_file_given_explicitly_is_read_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINSENT_CONFIG", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text("windows: [5m]\ngrace_seconds: 30\nalert_fire_z: 2.5\n")
    monkeypatch.setenv("FINSENT_GRACE_SECONDS", "45")

    s = Settings.load(config_file=config, alert_fire_z=2.0)

    assert (s.windows, s.grace_seconds, s.alert_fire_z) == (("5m",), 45, 2.0)
    # A child process is handed the file with everything else, and builds the same settings.
    env = s.child_env()
    assert env["FINSENT_CONFIG"] == str(config)
    monkeypatch.delenv("FINSENT_GRACE_SECONDS")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings.load() == s


def test_a_config_file_cannot_name_another(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"config: {tmp_path / 'other.yaml'}\n")
    with pytest.raises(ValueError, match="cannot name another config file"):
        Settings.load(config_file=config)


def test_empty_path_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_CONFIG", "")
    monkeypatch.setenv("FINSENT_DATASETS_DIR", "")
    s = Settings()
    assert (s.config, s.datasets_dir) == (None, None)
    assert "FINSENT_CONFIG" not in s.child_env()


def test_the_fixed_variables_of_other_modules_are_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_DATASETS_DIR", str(tmp_path))
    monkeypatch.setenv("FINSENT_KAFKA_LOG_LEVEL", "DEBUG")
    s = Settings()
    assert (s.datasets_dir, s.kafka_log_level) == (tmp_path, "DEBUG")


def test_secrets_named_by_a_file_are_read_from_the_given_environment() -> None:
    environ = {"TEAM_WEBHOOK": "https://hooks.example/team-secret", "BLANK": ""}

    secret = secret_from_env("TEAM_WEBHOOK", environ)

    assert secret is not None and secret.get_secret_value() == environ["TEAM_WEBHOOK"]
    assert "team-secret" not in repr(secret) + str(secret)
    assert secret_from_env("BLANK", environ) is None  # empty is unset
    assert secret_from_env("MISSING", environ) is None


def test_the_default_secret_names_are_the_settings_own() -> None:
    s = Settings(smtp_password=SecretStr("from-settings"), slack_webhook_url=None)
    environ = {"FINSENT_SMTP_PASSWORD": "from-environ", "OTHER_PASSWORD": "other"}

    default = s.secret("FINSENT_SMTP_PASSWORD", environ)
    other = s.secret("OTHER_PASSWORD", environ)

    assert default is not None and default.get_secret_value() == "from-settings"
    assert other is not None and other.get_secret_value() == "other"
    assert s.secret("FINSENT_SLACK_WEBHOOK_URL", environ) is None


def test_the_dashboard_time_zone_is_a_zone_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINSENT_CONFIG", raising=False)
    assert Settings().dashboard_tz == "UTC"
    monkeypatch.setenv("FINSENT_DASHBOARD_TZ", "Europe/London")
    assert Settings().dashboard_tz == "Europe/London"
    monkeypatch.setenv("FINSENT_DASHBOARD_TZ", "")
    assert Settings().dashboard_tz == "UTC"
    for bad in ("Mars/Olympus", "../etc/passwd"):
        monkeypatch.setenv("FINSENT_DASHBOARD_TZ", bad)
        with pytest.raises(ValidationError, match="not a time zone name"):
            Settings()


def test_a_sqlite_store_in_a_missing_folder_is_refused_unless_asked(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "dir"
    for field in ("store_url", "ingest_state_url", "backtest_registry_url"):
        with pytest.raises(ValidationError, match=f"the folder {missing} does not exist"):
            Settings(**{field: f"sqlite:///{missing / 'x.db'}"})
    asked = Settings(store_url=f"sqlite:///{missing / 'x.db'}", store_create_dirs=True)
    assert asked.database_url == f"sqlite:///{missing / 'x.db'}"
    assert not missing.exists()  # the store makes it when it opens, not the settings


def test_a_store_under_the_cache_dir_and_one_in_an_existing_folder_are_fine(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"  # not made yet: finsent's own, made on first use
    Settings(cache_dir=cache, store_url=f"sqlite:///{cache / 'backtests' / 'run1' / 'x.db'}")
    Settings(store_url=f"sqlite:///{tmp_path / 'x.db'}")
    Settings(store_url="sqlite:///:memory:")
    Settings(store_url="postgresql+psycopg://me:pw@db.example:5432/finsent")
    Settings(store_url="postgresql+psycopg2://me@db/finsent")  # a driver is the store's concern


@pytest.mark.parametrize(
    ("url", "says"),
    [("foo://x/y", "unknown database 'foo'"), ("not a url", "not a database URL")],
)
def test_a_store_url_sqlalchemy_does_not_know_is_refused(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as raised:
        Settings(store_url=url)
    assert "postgresql+psycopg://user:password@host:5432/database" in str(raised.value)
