"""The set-up doctor: each probe against the real thing it probes (a broker, SQLite files, the
shipped model, a loopback feed server, loopback Slack and SMTP servers), its ✗ and its fix."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.feed_server import FeedServer, Route, item, rss
from support.notify_loopback import Reply, SmtpServer, WebhookServer

from finsent.alerts.rules import AlertRules
from finsent.app import doctor
from finsent.app.doctor import CheckResult, run_checks
from finsent.app.ports import free_port
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import ensure_topics
from finsent.runtime.store import SCHEMA_VERSION, create_schema, make_engine

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WEBHOOK_TOKEN = "doctorWebhookSeCrEt9b1e77"
SMTP_PASSWORD = "doctor-smtp-PaSsW0rd-51a"
FEED = rss(
    item(
        "Bank shares slide on default fears",
        "http://example.test/a",
        "Mon, 09 Mar 2026 10:00:00 GMT",
    )
    + item("Lender posts record loss", "http://example.test/b", "Mon, 09 Mar 2026 11:00:00 GMT")
)


def settings_in(tmp_path: Path, **overrides: object) -> Settings:
    """Settings of their own: a cache under ``tmp_path`` and no broker (a free port)."""
    values: dict[str, object] = {
        "cache_dir": tmp_path / "cache",
        "kafka_port": free_port(),
        "scorer": "lexicon",
        **overrides,
    }
    return Settings(**values)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def failed(result: CheckResult) -> str:
    """A ✗'s detail and fix, after checking it is one and has a fix."""
    assert not result.ok, result
    assert result.fix, result
    return f"{result.detail} | {result.fix}"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def write_sources(path: Path, *urls: str) -> Path:
    entries = [
        {"name": f"wire-{i}", "url": url, "kind": "rss", "allow_private_network": True}
        for i, url in enumerate(urls)
    ]
    path.write_text(json.dumps({"sources": entries}))  # JSON is YAML
    return path


def write_rules(path: Path, channels: dict[str, dict[str, object]]) -> Path:
    rules = {"channels": channels, "routes": [{"channels": sorted(channels)}]}
    path.write_text(json.dumps(rules))
    return path


# -- effective settings ---------------------------------------------------------------------


def test_effective_settings_mask_secrets_and_database_passwords(tmp_path: Path) -> None:
    webhook = f"https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}"
    settings = settings_in(
        tmp_path,
        slack_webhook_url=webhook,
        store_url="postgresql+psycopg://finsent:dbPaSsWoRd@db.example:5432/finsent",
    )

    rows = {row.env: row for row in doctor.effective_settings(settings)}

    shown = "\n".join(f"{row.env}={row.value}" for row in rows.values())
    assert WEBHOOK_TOKEN not in shown and "dbPaSsWoRd" not in shown
    assert rows["FINSENT_SLACK_WEBHOOK_URL"].value == "set (hidden)"
    assert rows["FINSENT_SMTP_PASSWORD"].value == "not set"
    assert (
        rows["FINSENT_STORE_URL"].value
        == "postgresql+psycopg://finsent:***@db.example:5432/finsent"
    )
    assert rows["FINSENT_KAFKA_PORT"].given and not rows["FINSENT_KAFKA_HOST"].given
    assert rows["(Kafka bootstrap in use)"].value == settings.bootstrap_servers
    assert len(rows) == len(Settings.model_fields) + len(doctor.DERIVED)


# -- broker and partitions ------------------------------------------------------------------


def test_no_broker_is_a_cross_with_the_fix(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    broker = doctor.check_broker(settings, timeout_s=2)
    partitions = doctor.check_partitions(settings, broker.ok)

    assert "finsent kafka start" in failed(broker)
    assert f"127.0.0.1:{settings.kafka_port}" in broker.detail
    assert "not checked" in failed(partitions)


@pytest.mark.kafka
def test_missing_topics_and_too_few_partitions_say_how_to_fix_them(
    pipeline_settings: Settings,
) -> None:
    assert doctor.check_broker(pipeline_settings).ok
    missing = doctor.check_partitions(pipeline_settings, broker_ok=True)
    assert "finsent topics" in failed(missing)
    assert f"{pipeline_settings.topic_prefix}news.keyed" in missing.detail

    ensure_topics(pipeline_settings)
    assert doctor.check_partitions(pipeline_settings, broker_ok=True).ok
    wants_more = pipeline_settings.model_copy(update={"partitions_per_topic": {"news.keyed": 3}})
    short = doctor.check_partitions(wants_more, broker_ok=True)
    assert f"{pipeline_settings.topic_prefix}news.keyed has 1, the settings want 3" in short.detail
    assert "--partitions" in failed(short)


@pytest.mark.kafka
def test_a_complete_set_up_is_all_ticks(
    pipeline_settings: Settings, feed_server: FeedServer, tmp_path: Path
) -> None:
    """Broker and topics, a made store, the lexicon scorer, one source fetched once, a rules
    file with Slack and email channels each sent one test notification."""
    ensure_topics(pipeline_settings)
    create_schema(make_engine(pipeline_settings.database_url))
    sources = write_sources(tmp_path / "sources.yaml", feed_server.add("/feed.xml", Route(FEED)))
    with WebhookServer() as slack, SmtpServer(mode="none") as smtp:
        rules = write_rules(
            tmp_path / "rules.yaml",
            {
                "ops": {"type": "slack", "webhook_env": "DOCTOR_TEST_WEBHOOK"},
                "risk": {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "sender": "finsent@example.test",
                    "to": ["risk@example.test"],
                },
            },
        )
        settings = pipeline_settings.model_copy(
            update={"sources_file": sources, "alert_rules_file": rules}
        )
        environ = {"DOCTOR_TEST_WEBHOOK": slack.url(f"/services/T/B/{WEBHOOK_TOKEN}")}
        seen: list[str] = []

        results = run_checks(
            settings,
            fetch_once=True,
            send_test=True,
            now=NOW,
            environ=environ,
            min_free_bytes=0,
            progress=lambda r: seen.append(r.name),
        )

    assert [r for r in results if not r.ok] == []
    names = [r.name for r in results]
    assert names == seen
    assert names[:5] == ["broker", "store", "dedup memory", "artifact", "sources"]
    assert names[5:10] == ["source wire-0", "rules", "slack ops", "email risk", "partitions"]
    assert names[10].startswith("disk")
    checks = by_name(results)
    assert f"schema version {SCHEMA_VERSION}" in checks["store"].detail
    assert "2 stories parsed, 2 usable" in checks["source wire-0"].detail
    (posted,) = slack.accepted
    assert doctor.TEST_KEY in posted.json()["text"]
    (mail,) = smtp.messages
    assert doctor.TEST_KEY in mail.message["Subject"]
    assert "test notification" in mail.message.get_body(("plain",)).get_content()
    assert all(WEBHOOK_TOKEN not in r.detail + r.fix for r in results)


# -- the store ------------------------------------------------------------------------------


def test_a_fresh_store_is_fine_and_the_check_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "new" / "finsent.db"

    result = doctor.check_store(f"sqlite:///{path}")

    assert result.ok and "not made yet" in result.detail
    assert not path.parent.exists()


def test_a_store_in_a_folder_that_cannot_be_made_is_a_cross(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = doctor.check_store(f"sqlite:///{blocker / 'sub' / 'finsent.db'}")

    assert "FINSENT_STORE_URL" in failed(result)


def test_a_store_of_another_schema_version_is_a_cross(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'finsent.db'}"
    engine = make_engine(url)
    create_schema(engine)
    assert doctor.check_store(url).ok
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE store_meta SET value = '1' WHERE name = 'schema'")

    result = doctor.check_store(url)

    assert f"schema version 1; this finsent needs {SCHEMA_VERSION}" in result.detail
    assert "move it aside" in failed(result)


def test_a_file_that_is_no_database_is_a_cross(tmp_path: Path) -> None:
    path = tmp_path / "finsent.db"
    path.write_bytes(b"not a database at all" * 100)

    result = doctor.check_store(f"sqlite:///{path}")

    assert "cannot be read" in result.detail and "readable by this user" in failed(result)


def test_an_unreachable_postgres_is_a_cross_without_its_password() -> None:
    url = f"postgresql+psycopg://finsent:pgSeCrEt@127.0.0.1:{free_port()}/finsent"

    result = doctor.check_store(url)

    assert "start PostgreSQL" in failed(result)
    assert "pgSeCrEt" not in result.detail + result.fix


def test_postgres_without_its_driver_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what Python sees when it is absent

    result = doctor.check_store("postgresql+psycopg://finsent@127.0.0.1/finsent")

    assert "pip install 'finsent[postgres]'" in failed(result)


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("postgresql://finsent@127.0.0.1/finsent", "postgresql+psycopg://"),
        ("mysql://finsent@127.0.0.1/finsent", "sqlite:///"),
    ],
)
def test_a_store_url_finsent_cannot_use_is_a_cross(url: str, fix: str) -> None:
    assert fix in failed(doctor.check_store(url))


# -- the model ------------------------------------------------------------------------------


def test_the_shipped_artifact_is_verified_and_its_version_shown(tmp_path: Path) -> None:
    result = doctor.check_artifact(settings_in(tmp_path, scorer="attention"))

    assert result.ok
    assert "finsent-attn" in result.detail and "shipped" in result.detail


def test_a_folder_without_an_artifact_is_a_cross(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, scorer="attention", model_artifact=tmp_path)

    assert "FINSENT_MODEL_ARTIFACT" in failed(doctor.check_artifact(settings))


def test_the_registry_s_promoted_model_is_shown_and_a_missing_one_is_a_cross(
    tmp_path: Path,
) -> None:
    import shutil

    from support.model_versions import register_fake

    from finsent.model.registry import ModelRegistry, RegistryConfig
    from finsent.runtime.store import Store

    settings = settings_in(tmp_path, scorer="attention")
    assert "nothing promoted" in doctor.check_artifact(settings).detail  # no store yet
    store = Store(settings.database_url)
    registry = ModelRegistry(store, RegistryConfig.from_settings(settings))
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    version = register_fake(registry, tmp_path / "work", "finsent-attn-1+0000beef", now=at)
    registry.promote(version, by="ann", reason="", now=at)

    result = doctor.check_artifact(settings)
    assert result.ok
    assert f"the registry's promoted {version} runs (promoted 2026-12-01 09:00 UTC by ann)" in (
        result.detail
    )
    shutil.rmtree(registry.path_of(version))
    result = doctor.check_artifact(settings)
    assert not result.ok and f"the promoted model {version} cannot be read" in result.detail
    assert "finsent model rollback" in (result.fix or "")
    pinned = settings.model_copy(update={"model_follow_registry": False})
    assert doctor.check_artifact(pinned).ok  # a pinned scorer does not read the registry
    store.close()


def test_an_unknown_scorer_is_a_cross(tmp_path: Path) -> None:
    assert "attention, lexicon" in failed(doctor.check_artifact(settings_in(tmp_path, scorer="x")))


# -- sources --------------------------------------------------------------------------------


def test_a_missing_sources_file_is_a_cross(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, sources_file=tmp_path / "nope.yaml")

    (result,) = doctor.check_sources(settings, fetch_once=False, now=NOW)

    assert "--example" in failed(result) and "cannot be read" in result.detail


def test_a_sources_file_with_a_literal_key_is_a_cross(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("- {name: x, url: 'https://a.example/f', kind: rss, token: abc}\n")

    (result,) = doctor.check_sources(
        settings_in(tmp_path, sources_file=path), fetch_once=False, now=NOW
    )

    assert "api_key_env" in failed(result)


def test_fetch_once_fetches_each_source_and_remembers_nothing(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    good = feed_server.add("/feed.xml", Route(FEED, conditional=True))
    gone = feed_server.add("/gone.xml", Route(b"no", status=404))
    settings = settings_in(tmp_path, sources_file=write_sources(tmp_path / "s.yaml", good, gone))

    for _ in range(2):
        listed, fetched, missing = doctor.check_sources(settings, fetch_once=True, now=NOW)
        assert listed.ok and "2 sources" in listed.detail
        assert fetched.ok and "2 stories parsed, 2 usable" in fetched.detail
        assert "HTTP 404" in missing.detail and "does not exist" in failed(missing)

    # No ETag remembered: the second run got the whole feed again, not a 304.
    assert [h.headers.get("If-None-Match") for h in feed_server.hits("/feed.xml")] == [None] * 2
    assert not (settings.cache_dir / "ingest").exists()


def test_fetch_once_of_a_private_address_says_how_to_allow_it(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    url = feed_server.add("/feed.xml", Route(FEED))
    path.write_text(json.dumps([{"name": "intranet", "url": url, "kind": "rss"}]))

    _, result = doctor.check_sources(
        settings_in(tmp_path, sources_file=path), fetch_once=True, now=NOW
    )

    assert "allow_private_network" in failed(result)
    assert feed_server.hits("/feed.xml") == []


# -- rules, Slack and email -----------------------------------------------------------------


def test_a_bad_rules_file_names_its_line_and_skips_the_channels(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("channels:\n  ops: {type: slack}\nroutes:\n  - {channels: [pager]}\n")

    checks = by_name(run_checks(settings_in(tmp_path, alert_rules_file=rules), now=NOW))

    assert f"{rules}:4" in checks["rules"].detail and "pager" in failed(checks["rules"])
    assert "rules file" in failed(checks["slack"]) and "rules file" in failed(checks["email"])


def test_a_missing_rules_file_is_a_cross(tmp_path: Path) -> None:
    result, rules = doctor.check_rules(settings_in(tmp_path, alert_rules_file=tmp_path / "x.yaml"))

    assert rules is None and "FINSENT_ALERT_RULES_FILE" in failed(result)


def test_no_channels_is_fine_and_says_how_to_add_them(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    result, rules = doctor.check_rules(settings)
    assert rules is not None and result.ok

    (slack,) = doctor.check_slack(settings, rules, send_test=True, now=NOW)
    (email,) = doctor.check_email(settings, rules, send_test=True, now=NOW)

    assert slack.ok and "FINSENT_SLACK_WEBHOOK_URL" in slack.detail
    assert email.ok and "email channel" in email.detail


def test_a_slack_channel_without_its_webhook_says_what_to_export(tmp_path: Path) -> None:
    rules_file = write_rules(tmp_path / "r.yaml", {"ops": {"type": "slack", "webhook_env": "NOPE"}})
    settings = settings_in(tmp_path, alert_rules_file=rules_file)
    _, rules = doctor.check_rules(settings)
    assert rules is not None

    (result,) = doctor.check_slack(settings, rules, send_test=False, now=NOW, environ={})

    assert "export NOPE=" in failed(result)


def test_a_plain_http_webhook_elsewhere_is_refused(tmp_path: Path) -> None:
    url = f"http://hooks.example.test/services/{WEBHOOK_TOKEN}"
    settings = settings_in(tmp_path, slack_webhook_url=url)
    _, rules = doctor.check_rules(settings)
    assert rules is not None

    (result,) = doctor.check_slack(settings, rules, send_test=False, now=NOW)

    assert "https" in failed(result)
    assert WEBHOOK_TOKEN not in result.detail + result.fix


def test_send_test_reports_a_refused_webhook_without_its_secret(tmp_path: Path) -> None:
    with WebhookServer(default=Reply(404, b"no_service")) as slack:
        settings = settings_in(
            tmp_path, slack_webhook_url=slack.url(f"/services/T/B/{WEBHOOK_TOKEN}")
        )
        _, rules = doctor.check_rules(settings)
        assert rules is not None
        (result,) = doctor.check_slack(settings, rules, send_test=True, now=NOW)

    assert "HTTP 404" in result.detail and "revoked" in failed(result)
    assert WEBHOOK_TOKEN not in result.detail + result.fix
    assert len(slack.received) == 1


def email_settings(tmp_path: Path, port: int, **channel: object) -> tuple[Settings, AlertRules]:
    risk = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "finsent@example.test",
        "to": ["risk@example.test"],
        **channel,
    }
    settings = settings_in(
        tmp_path, alert_rules_file=write_rules(tmp_path / "r.yaml", {"risk": risk})
    )
    _, rules = doctor.check_rules(settings)
    assert rules is not None
    return settings, rules


def test_an_unreachable_smtp_server_is_a_cross_with_the_fix(tmp_path: Path) -> None:
    settings, rules = email_settings(tmp_path, free_port())

    (result,) = doctor.check_email(settings, rules, send_test=False, now=NOW)

    assert "connection failed" in result.detail
    assert "SMTP server runs" in failed(result)


def test_a_reachable_smtp_server_is_greeted_and_sent_nothing(tmp_path: Path) -> None:
    with SmtpServer(mode="none") as smtp:
        settings, rules = email_settings(tmp_path, smtp.port)
        (result,) = doctor.check_email(settings, rules, send_test=False, now=NOW)

    assert result.ok and "answers" in result.detail
    assert smtp.messages == [] and smtp.data_calls == 0


def test_an_smtp_login_without_its_password_says_what_to_export(tmp_path: Path) -> None:
    settings, rules = email_settings(
        tmp_path, free_port(), security="starttls", username="alerts", password_env="DOCTOR_PW"
    )

    (result,) = doctor.check_email(settings, rules, send_test=False, now=NOW, environ={})

    assert "export DOCTOR_PW=" in failed(result)


def test_send_test_reports_what_the_smtp_server_refused(tmp_path: Path) -> None:
    with SmtpServer(mode="none", data_replies=["554 no thanks"]) as smtp:
        settings, rules = email_settings(tmp_path, smtp.port)
        (result,) = doctor.check_email(settings, rules, send_test=True, now=NOW)

    assert "554 no thanks" in result.detail
    assert "takes mail from finsent@example.test" in failed(result)


# -- disk -----------------------------------------------------------------------------------


def test_disk_below_the_threshold_is_a_cross(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    fine = doctor.check_disk(settings, min_free_bytes=0)
    full = doctor.check_disk(settings, min_free_bytes=2**62)

    assert [r.name for r in fine] == ["disk (cache)"] and fine[0].ok
    assert str(settings.cache_dir) in fine[0].detail
    assert "FINSENT_CACHE_DIR" in failed(full[0])
