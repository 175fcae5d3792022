"""``finsent check``: a doctor for the whole set-up.

Each probe looks at one part of a deployment the way the stages would use it and returns a
``CheckResult``: ok or not, what it found, and for a failure the fix. Probes only read: the
broker's topics are listed, the store is opened read-only, the sources are fetched without
sending anything or touching the dedup memory. Only ``send_test`` sends something: one test
notification per configured channel, clearly marked. Every text that leaves this module goes
through the process's secret scrubber, so a secret set in the environment never shows.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kafka import KafkaAdminClient
from sqlalchemy import create_engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from finsent.alerts.alerter import load_alert_rules
from finsent.alerts.notify.email import EmailNotifier, classify_smtp_failure
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.alerts.notify.slack import SlackNotifier
from finsent.alerts.rules import AlertRules, EmailChannel, RulesError, SlackChannel
from finsent.app.extras import require_scorer, require_store
from finsent.app.kafka_local import LocalKafka
from finsent.core.errors import hide_password
from finsent.core.records import Alert, Headline
from finsent.core.safety import SECRETS
from finsent.core.settings import ENV_PREFIX, SECRET_FIELDS, TOPIC_NAMES, Settings
from finsent.ingest.poller import FeedPoller, PollerConfig, reason_kind
from finsent.ingest.sources import SourcesError, load_sources
from finsent.ingest.worker import normalize_all
from finsent.model.artifact import ArtifactError, read_artifact
from finsent.model.scorer import SCORERS, LexiconScorer
from finsent.runtime import kafka_io
from finsent.runtime.store import SCHEMA_VERSION
from finsent.runtime.store.schema import stored_schema_version

GIB = 1024**3
MIN_FREE_BYTES = 1 * GIB  # below this a store, a broker log or the cache soon stops writing
PROBE_TIMEOUT_S = 5.0
TEST_KEY = "TEST finsent-check (ignore)"
POLL_EXAMPLE = "`finsent ingest poll --example` prints a valid one"


@dataclass(frozen=True)
class CheckResult:
    """One probe's outcome; ``fix`` says what to do when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class SettingValue:
    """One effective setting: its environment variable, its value as shown (secrets masked)
    and whether it was given (environment, config file or option) rather than defaulted."""

    env: str
    value: str
    given: bool


def scrubbed(result: CheckResult) -> CheckResult:
    return CheckResult(
        result.name, result.ok, SECRETS.scrub(result.detail), SECRETS.scrub(result.fix)
    )


# -- effective settings ---------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if value == "":
        return '""'
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


URL_FIELDS = frozenset({"store_url", "backtest_registry_url", "ingest_state_url"})
DERIVED = {
    "bootstrap_servers": "Kafka bootstrap in use",
    "database_url": "store in use",
    "ingest_database_url": "dedup memory in use",
    "backtest_registry_database_url": "backtest registry in use",
}


def effective_settings(settings: Settings) -> list[SettingValue]:
    """Every setting as its ``FINSENT_*`` variable and value, then the derived addresses the
    stages use; secrets show only whether they are set, database URLs hide their password."""
    given = settings.model_fields_set
    rows = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS:
            shown = "not set" if value is None else "set (hidden)"
        elif name in URL_FIELDS and value:
            shown = hide_password(value)
        else:
            shown = _shown(value)
        rows.append(
            SettingValue(f"{ENV_PREFIX}{name.upper()}", SECRETS.scrub(shown), name in given)
        )
    for name, label in DERIVED.items():
        value = getattr(settings, name)
        shown = hide_password(value) if name.endswith("database_url") else str(value)
        rows.append(SettingValue(f"({label})", SECRETS.scrub(shown), False))
    return rows


# -- broker and partitions ------------------------------------------------------------------


def check_broker(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> CheckResult:
    """Whether some bootstrap address accepts a connection and answers as Kafka."""
    where = settings.bootstrap_servers
    try:
        kafka_io.check_broker(where, timeout_s=timeout_s)
    except kafka_io.BrokerUnreachable:
        return CheckResult(
            "broker",
            False,
            f"Kafka at {where} is not reachable",
            "start the local broker with `finsent kafka start`, or set FINSENT_KAFKA_BOOTSTRAP "
            "to the host:port of the running one",
        )
    try:
        topics = topic_partitions(where, timeout_s)
    except Exception as exc:  # kafka-python raises several kinds; all mean "not Kafka-like"
        return CheckResult(
            "broker",
            False,
            f"{where} accepts connections but does not answer as Kafka "
            f"({type(exc).__name__}: {exc})",
            "check that FINSENT_KAFKA_BOOTSTRAP names the broker's client listener "
            "(not its controller port), and that the broker finished starting",
        )
    return CheckResult("broker", True, f"Kafka at {where} answers; {len(topics)} topics")


def topic_partitions(bootstrap_servers: str, timeout_s: float) -> dict[str, int]:
    """Every topic on the broker and its partition count."""
    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="finsent-check",
        request_timeout_ms=max(timeout_ms, 1000),
        api_version_auto_timeout_ms=max(timeout_ms, 1000),
    )
    try:
        counts = {}
        for topic in admin.describe_topics():
            # Older and newer client versions name this "topic" or "name".
            name = str(topic.get("topic", topic.get("name")))
            if not topic.get("error_code"):
                counts[name] = len(topic.get("partitions") or [])
        return counts
    finally:
        admin.close()


def check_partitions(
    settings: Settings, broker_ok: bool, timeout_s: float = PROBE_TIMEOUT_S
) -> CheckResult:
    """Every pipeline topic exists with at least its configured partitions."""
    if not broker_ok:
        return CheckResult(
            "partitions", False, "not checked: the broker is not usable", "fix the broker first"
        )
    try:
        found = topic_partitions(settings.bootstrap_servers, timeout_s)
    except Exception as exc:
        return CheckResult(
            "partitions",
            False,
            f"topics could not be listed ({type(exc).__name__}: {exc})",
            "fix the broker first",
        )
    missing, short, fine = [], [], []
    for name in TOPIC_NAMES:
        topic, wanted = settings.topic(name), settings.partitions_for(name)
        have = found.get(topic)
        if have is None:
            missing.append(topic)
        elif have < wanted:
            short.append(f"{topic} has {have}, the settings want {wanted}")
        else:
            fine.append(f"{topic}: {have}")
    if missing:
        return CheckResult(
            "partitions",
            False,
            f"missing topics: {', '.join(missing)}",
            "create them with `finsent topics` (`finsent kafka start` does too)",
        )
    if short:
        return CheckResult(
            "partitions",
            False,
            "fewer partitions than configured: " + "; ".join(short),
            "Kafka never adds partitions by itself: add them with kafka-topics.sh --alter "
            "--partitions N (keyed series move to other partitions, so do it before the "
            "stages run), or lower FINSENT_PARTITIONS / FINSENT_PARTITIONS_PER_TOPIC",
        )
    return CheckResult("partitions", True, "; ".join(fine))


# -- the store ------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for another backend or an in-memory one."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_store(url: str, name: str = "store", setting: str = "FINSENT_STORE_URL") -> CheckResult:
    """Opens the store read-only and compares its schema version with this finsent's."""
    shown = hide_password(url)
    scheme = url.split(":", 1)[0]
    path = _sqlite_path(url)
    if scheme == "sqlite":
        if path is None:
            return CheckResult(name, True, f"SQLite in memory ({shown}): nothing is kept")
        if not path.exists():
            base = _existing_ancestor(path.parent)
            if not base.is_dir() or not _writable(base):
                return CheckResult(
                    name,
                    False,
                    f"SQLite at {path}: its folder cannot be made ({base} is not a writable "
                    "folder)",
                    f"create {path.parent} writable for this user, or point {setting} "
                    "(or FINSENT_CACHE_DIR) to a writable place",
                )
            return CheckResult(
                name,
                True,
                f"SQLite at {path}: not made yet; the first stage creates it "
                f"(schema version {SCHEMA_VERSION})",
            )
        # Read-only: a check must not create, stamp or switch the journal of the store.
        uri = f"{path.absolute().as_uri()}?mode=ro"
        target = "sqlite://"
        options: dict[str, Any] = {"creator": lambda: sqlite3.connect(uri, uri=True)}
    elif scheme.startswith("postgresql"):
        if scheme != "postgresql+psycopg":
            return CheckResult(
                name,
                False,
                f"{shown}: finsent talks to PostgreSQL through psycopg 3",
                f"write {setting} as postgresql+psycopg://user@host:5432/db",
            )
        try:
            require_store(url)
        except ModuleNotFoundError:
            return CheckResult(
                name,
                False,
                f"PostgreSQL store {shown}: the psycopg driver is not installed",
                "pip install 'finsent[postgres]'",
            )
        target = url
        options = {"connect_args": {"connect_timeout": int(PROBE_TIMEOUT_S)}}
    else:
        return CheckResult(
            name,
            False,
            f"{shown}: finsent stores in SQLite or PostgreSQL only",
            f"set {setting} to sqlite:///path/to/finsent.db or "
            "postgresql+psycopg://user@host:5432/db (empty: SQLite under FINSENT_CACHE_DIR)",
        )
    try:
        engine = create_engine(target, **options)
    except (ArgumentError, ImportError, ValueError) as exc:
        return CheckResult(
            name, False, f"{shown} is not a usable URL ({exc})", f"correct {setting}"
        )
    dialect = "SQLite" if scheme == "sqlite" else "PostgreSQL"
    try:
        found = stored_schema_version(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        fix = (
            "start PostgreSQL, or correct host, port, user, password and database in " + setting
            if dialect == "PostgreSQL"
            else f"check that {path} is a finsent SQLite file readable by this user"
        )
        return CheckResult(name, False, f"{dialect} at {shown} cannot be read: {reason}", fix)
    finally:
        engine.dispose()
    where = str(path) if path is not None else shown
    if found is None:
        return CheckResult(
            name,
            True,
            f"{dialect} at {where}: empty; the first stage creates schema version {SCHEMA_VERSION}",
        )
    if found != str(SCHEMA_VERSION):
        return CheckResult(
            name,
            False,
            f"{dialect} at {where} has schema version {found}; this finsent needs {SCHEMA_VERSION}",
            f"move it aside (or point {setting} elsewhere) and let the stages build a new one",
        )
    return CheckResult(name, True, f"{dialect} at {where}, schema version {found}")


def _writable(folder: Path) -> bool:

    return os.access(folder, os.W_OK | os.X_OK)


# -- the model ------------------------------------------------------------------------------


def check_artifact(settings: Settings) -> CheckResult:
    """The scorer the settings choose, and for the attention model its artifact as the
    scorer would verify it (format, backbone, the ONNX graph's checksum)."""
    scorer = settings.scorer
    if scorer not in SCORERS:
        return CheckResult(
            "artifact",
            False,
            f"unknown scorer {scorer!r}",
            f"set FINSENT_SCORER to one of {', '.join(SCORERS)}",
        )
    extra = "model" if scorer == "attention" else "lexicon"
    try:
        require_scorer(scorer)
    except ModuleNotFoundError as exc:
        return CheckResult(
            "artifact",
            False,
            f"the {scorer} scorer needs the '{extra}' extra (no module named {exc.name!r})",
            f"pip install 'finsent[{extra}]'",
        )
    if scorer == "lexicon":
        return CheckResult(
            "artifact", True, f"lexicon scorer {LexiconScorer.version}: no model artifact used"
        )

    try:
        info = read_artifact(settings.model_artifact)
    except (ArtifactError, RuntimeError, OSError) as exc:
        return CheckResult(
            "artifact",
            False,
            str(exc),
            "point FINSENT_MODEL_ARTIFACT at a folder written by `finsent train`, or unset it "
            "to use the artifact shipped with finsent",
        )
    origin = "shipped" if settings.model_artifact is None else "FINSENT_MODEL_ARTIFACT"
    checksum = str(info.meta.get("onnx_sha256", ""))[:12]
    detail = (
        f"attention model {info.version} ({origin}, {info.path}); format {info.meta['format']}, "
        f"graph sha256 {checksum}…; backend {settings.model_backend}"
    )
    if not settings.model_follow_registry:
        return CheckResult("artifact", True, f"{detail}; pinned (FINSENT_MODEL_FOLLOW_REGISTRY)")
    promoted, problem = promoted_model(settings.database_url)
    if problem is not None:
        return CheckResult(
            "artifact",
            False,
            f"{detail}; {problem}: the scorers run the default instead",
            "restore the folder, or `finsent model rollback` (or promote another version)",
        )
    return CheckResult(
        "artifact",
        True,
        f"{detail}; {promoted or 'nothing promoted in the model registry: this one runs'}",
    )


def promoted_model(url: str) -> tuple[str | None, str | None]:
    """(what the model registry's latest promotion says the scorers run, or None; what is
    wrong with it, or None), read-only: a store not made yet has promoted nothing."""
    from finsent.runtime.store.registry import SHIPPED_PATH, active, version

    path = _sqlite_path(url)
    if path is not None and not path.exists():
        return None, None
    if path is not None:
        uri = f"{path.absolute().as_uri()}?mode=ro"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    else:
        engine = create_engine(url, connect_args={"connect_timeout": int(PROBE_TIMEOUT_S)})
    try:
        with engine.connect() as conn:
            latest = active(conn)
            row = version(conn, latest["version"]) if latest and latest["version"] else None
    except SQLAlchemyError:
        return None, None  # an old or unreachable store: the store check says which
    finally:
        engine.dispose()
    if latest is None or latest["version"] is None:
        return None, None
    name = str(latest["version"])
    where = f"promoted {latest['at']:%Y-%m-%d %H:%M} UTC by {latest['by']}"
    if row is None:
        return None, f"the promoted model {name} is not in the registry"
    if row["path"] != SHIPPED_PATH:
        try:
            read_artifact(Path(row["path"]))
        except (ArtifactError, OSError) as exc:
            return None, f"the promoted model {name} cannot be read ({exc})"
    return f"the registry's promoted {name} runs ({where})", None


# -- sources --------------------------------------------------------------------------------

# Fixes for the reasons a fetch fails with, by ``finsent.ingest.poller.reason_kind``.
FETCH_FIXES = {
    "timeout": "check the URL and the network (proxy, firewall); the poller retries with backoff",
    "connection_refused": "nothing listens at that address: check the URL's host and port",
    "connection_failed": "check the host name and the network (DNS, proxy, firewall)",
    "connection_reset": "the server dropped the connection: check the URL, or try later",
    "address_refused": "the URL points at a private or loopback address: set "
    "allow_private_network: true on the source if that is intended",
    "cross_origin": "the source redirects to another site: use the final URL",
    "too_many_redirects": "use the final URL of the feed",
    "too_large": "raise FINSENT_FETCH_MAX_BYTES, or use a smaller feed",
    "not_a_feed": "the URL serves no RSS or Atom feed: check it in a browser, or change its kind",
    "malformed_xml": "the feed is not well-formed XML: check the URL, or tell its publisher",
    "missing_api_key": "export the variable the source's api.api_key_env names",
    "invalid_json": "the API did not answer JSON: check the URL and its parameters",
    "missing_field": "check api.items_path and api.fields against the API's JSON",
    "http_401": "the API refused the key: check the variable api.api_key_env names",
    "http_403": "the server refused access: check the key, or the server's terms",
    "http_404": "the URL does not exist: check it in the sources file",
}


def check_sources(
    settings: Settings,
    *,
    fetch_once: bool,
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """The sources file the poller would load; with ``fetch_once``, one fetch and parse of
    each source through the poller's own path, handing the stories to nobody."""
    path = settings.sources_file
    if path is None:
        return [
            CheckResult(
                "sources",
                True,
                "no sources file (FINSENT_SOURCES_FILE): only `finsent ingest poll` needs "
                f"one; {POLL_EXAMPLE}",
            )
        ]
    try:
        sources = load_sources(path, environ=environ)
    except SourcesError as exc:
        fix = (
            f"create it or point FINSENT_SOURCES_FILE elsewhere; {POLL_EXAMPLE}"
            if not Path(path).is_file()
            else f"correct the fields named above; {POLL_EXAMPLE}"
        )
        return [CheckResult("sources", False, str(exc), fix)]
    if not sources:
        return [
            CheckResult("sources", False, f"{path} lists no sources", f"add some; {POLL_EXAMPLE}")
        ]
    listed = ", ".join(f"{s.name} ({s.kind}, every {s.interval_seconds} s)" for s in sources)
    results = [CheckResult("sources", True, f"{path}: {len(sources)} sources: {listed}")]
    if fetch_once:
        results.extend(fetch_each_once(settings, now=now, environ=environ))
    return results


def fetch_each_once(
    settings: Settings, *, now: datetime, environ: Mapping[str, str] | None = None
) -> Iterator[CheckResult]:
    """One run of each source, as the poller runs it, into a callback that keeps nothing:
    nothing goes to Kafka or the dedup memory, and no ETag is remembered (the next real poll
    still gets the full feed)."""

    def discard(_source: str, _stories: list[Any], _errors: list[Any]) -> None:
        return None

    poller = FeedPoller.from_config(
        PollerConfig.from_settings(settings), discard, environ=environ, state_path=None
    )
    max_future = timedelta(minutes=settings.max_future_minutes)
    try:
        for source in poller.sources:
            name = f"source {source.name}"
            outcome = poller.run_once(source)
            items, bad = normalize_all(outcome.stories, now, max_future)
            errors = [*outcome.errors, *bad]
            if outcome.failed or (errors and not items):
                reason = errors[-1].reason if errors else "no stories"
                fix = FETCH_FIXES.get(
                    reason_kind(reason), f"check {source.url} and the source's fields"
                )
                yield CheckResult(name, False, f"fetch failed: {reason}", fix)
            elif not items:
                yield CheckResult(
                    name, True, f"fetched {source.url}: the feed holds no stories right now"
                )
            else:
                skipped = f"; {len(errors)} skipped ({errors[0].reason})" if errors else ""
                yield CheckResult(
                    name,
                    True,
                    f"fetched {source.url}: {len(outcome.stories)} stories parsed, "
                    f"{len(items)} usable{skipped}",
                )
    finally:
        poller.shutdown(wait=False)


# -- alert rules and channels ---------------------------------------------------------------


def check_rules(settings: Settings) -> tuple[CheckResult, AlertRules | None]:
    """The rules file (or the defaults) and what it routes where; the rules, or None."""
    path = settings.alert_rules_file
    try:
        rules = load_alert_rules(settings)
    except RulesError as exc:
        return (
            CheckResult(
                "rules", False, str(exc), "correct the lines named (see the example in the README)"
            ),
            None,
        )
    except (OSError, UnicodeDecodeError) as exc:
        return (
            CheckResult(
                "rules",
                False,
                f"{path} cannot be read: {exc}",
                "create it, or unset FINSENT_ALERT_RULES_FILE to use the defaults",
            ),
            None,
        )
    origin = str(path) if path is not None else "no rules file (defaults)"
    channels = ", ".join(f"{n} ({c.type})" for n, c in rules.channels.items()) or "none"
    routes = "; ".join(
        f"{r.match} [{', '.join(r.severity)}] → {', '.join(r.channels)}" for r in rules.routes
    )
    detail = f"{origin}: channels {channels}; routes {routes or 'none'}"
    if not rules.routes:
        detail += " (alerts are stored and shown on the dashboard, not sent)"
    return CheckResult("rules", True, detail), rules


def check_notification(now: datetime, dashboard_url: str) -> Notification:
    """One clearly marked notification: its key, subject and only headline say it is a test."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    alert = Alert(
        id=f"finsent-check-{stamp}",
        key=TEST_KEY,
        state="firing",
        severity="warning",
        rule="finsent-check",
        window_start=now,
        window_end=now,
        neg_share=0.0,
        baseline_mean=0.0,
        baseline_std=0.0,
        zscore=0.0,
        count=0,
        headlines=(
            Headline(
                id="finsent-check",
                title="This is a test notification from `finsent check --send-test`: "
                "nothing is wrong, no action is needed.",
                score=0.0,
                source="finsent check",
            ),
        ),
        started_at=now,
        updated_at=now,
        message="test notification from finsent check",
    )
    return Notification(
        id=f"finsent-check-{stamp}",
        group_key=TEST_KEY,
        kind="firing",
        alerts=(alert,),
        dashboard_url=dashboard_url,
    )


def _tcp_reachable(host: str, port: int, timeout_s: float) -> str | None:
    """None when ``host:port`` accepts a connection, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def check_slack(
    settings: Settings,
    rules: AlertRules,
    *,
    send_test: bool,
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Each Slack channel: its webhook is set and usable, its host reachable; with
    ``send_test``, one test notification through the real Slack notifier."""
    channels = {n: c for n, c in rules.channels.items() if isinstance(c, SlackChannel)}
    if not channels:
        unused = (
            "; FINSENT_SLACK_WEBHOOK_URL is set but no channel of the rules file uses it"
            if settings.slack_webhook_url is not None
            else ""
        )
        return [
            CheckResult(
                "slack",
                True,
                "not configured: set FINSENT_SLACK_WEBHOOK_URL, or add a slack channel to the "
                f"rules file{unused}",
            )
        ]
    results = []
    for name, channel in channels.items():
        label = "slack" if name == "slack" else f"slack {name}"
        url = settings.secret(channel.webhook_env, environ)
        if url is None:
            results.append(
                CheckResult(
                    label,
                    False,
                    f"{channel.webhook_env} is not set",
                    f"export {channel.webhook_env}=<the incoming webhook URL Slack gave you>",
                )
            )
            continue
        try:
            notifier = SlackNotifier(name, url, timeout_s=PROBE_TIMEOUT_S * 2)
        except ValueError as exc:
            results.append(
                CheckResult(
                    label, False, str(exc), f"set {channel.webhook_env} to the https:// URL"
                )
            )
            continue
        parts = urlsplit(url.get_secret_value())
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not send_test:
            problem = _tcp_reachable(host, port, PROBE_TIMEOUT_S)
            if problem:
                results.append(
                    CheckResult(
                        label,
                        False,
                        f"webhook host {host}:{port} is not reachable ({problem})",
                        "check the network (proxy, firewall) and the webhook URL",
                    )
                )
            else:
                results.append(
                    CheckResult(label, True, f"webhook set (hidden); {host}:{port} reachable")
                )
            continue
        try:
            notifier.send(check_notification(now, rules.dashboard_url))
        except DeliveryError as exc:
            results.append(
                CheckResult(
                    label,
                    False,
                    f"test notification failed: {exc}",
                    "an HTTP 403/404 means the webhook was revoked or mistyped: make a new one "
                    f"in Slack and set {channel.webhook_env}; otherwise check the network",
                )
            )
            continue
        results.append(CheckResult(label, True, f"test notification sent to {host}"))
    return results


def smtp_greeting(host: str, port: int, security: str, timeout_s: float) -> None:
    """Connect as the email notifier would (TLS as configured), say EHLO and QUIT; raises what
    the connection raises. Sends no mail."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if security == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout_s)
    try:
        smtp.ehlo()
        if security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def check_email(
    settings: Settings,
    rules: AlertRules,
    *,
    send_test: bool,
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Each email channel: its password is set when it logs in, its server answers SMTP;
    with ``send_test``, one test message through the real email notifier."""
    channels = {n: c for n, c in rules.channels.items() if isinstance(c, EmailChannel)}
    if not channels:
        return [
            CheckResult(
                "email",
                True,
                "not configured: add an email channel to the rules file (FINSENT_ALERT_RULES_FILE)",
            )
        ]
    results = []
    for name, channel in channels.items():
        label = "email" if name == "email" else f"email {name}"
        server = f"{channel.host}:{channel.port} ({channel.security})"
        password = settings.secret(channel.password_env, environ) if channel.username else None
        if channel.username and password is None:
            results.append(
                CheckResult(
                    label,
                    False,
                    f"{server}: user {channel.username} but {channel.password_env} is not set",
                    f"export {channel.password_env}=<the SMTP password>",
                )
            )
            continue
        try:
            notifier = EmailNotifier.for_channel(
                name, channel, password, timeout_s=PROBE_TIMEOUT_S * 2
            )
        except ValueError as exc:
            results.append(
                CheckResult(label, False, str(exc), f"correct channel {name} in the rules file")
            )
            continue
        if send_test:
            try:
                notifier.send(check_notification(now, rules.dashboard_url))
            except DeliveryError as exc:
                results.append(
                    CheckResult(
                        label,
                        False,
                        f"test message failed: {exc}",
                        f"check host, port, security, username and {channel.password_env} of "
                        f"channel {name}, and that the server takes mail from {channel.sender}",
                    )
                )
                continue
            to = ", ".join(channel.to)
            results.append(CheckResult(label, True, f"{server}: test message sent to {to}"))
            continue
        try:
            smtp_greeting(channel.host, channel.port, channel.security, PROBE_TIMEOUT_S)
        except Exception as exc:  # classified as the notifier classifies a failed send
            _, reason = classify_smtp_failure(exc)
            results.append(
                CheckResult(
                    label,
                    False,
                    f"{server}: {reason}",
                    f"check host, port and security of channel {name} in the rules file, and "
                    "that the SMTP server runs and is reachable from here",
                )
            )
            continue
        results.append(CheckResult(label, True, f"{server}: the server answers"))
    return results


# -- disk -----------------------------------------------------------------------------------


def data_folders(settings: Settings) -> dict[str, Path]:
    """Where finsent writes on this machine: the cache, the SQLite files, the local broker."""
    folders = {"cache": settings.cache_dir}
    for label, url in (("store", settings.database_url), ("dedup", settings.ingest_database_url)):
        path = _sqlite_path(url)
        if path is not None:
            folders[label] = path.parent
    if not settings.kafka_bootstrap:  # the local broker keeps its log here
        folders["kafka data"] = LocalKafka(settings).data_dir
    return folders


def check_disk(settings: Settings, min_free_bytes: int = MIN_FREE_BYTES) -> list[CheckResult]:
    """Free space where each folder is (or will be), against ``min_free_bytes``."""
    results = []
    seen: set[Path] = set()
    for label, folder in data_folders(settings).items():
        base = _existing_ancestor(folder.expanduser())
        if base in seen:
            continue
        seen.add(base)
        free = shutil.disk_usage(base).free
        detail = f"{label} {folder}: {free / GIB:.1f} GiB free"
        if free < min_free_bytes:
            results.append(
                CheckResult(
                    f"disk ({label})",
                    False,
                    f"{detail}, under {min_free_bytes / GIB:.1f} GiB",
                    "free some space there (FINSENT_RETENTION_DAYS prunes old data), or move "
                    "FINSENT_CACHE_DIR / FINSENT_STORE_URL to a larger disk",
                )
            )
        else:
            results.append(CheckResult(f"disk ({label})", True, detail))
    return results


# -- all of them ----------------------------------------------------------------------------


def run_checks(
    settings: Settings,
    *,
    fetch_once: bool = False,
    send_test: bool = False,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
    timeout_s: float = PROBE_TIMEOUT_S,
    progress: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every probe in order: broker, store, artifact, sources, rules, Slack, email,
    partitions, disk. ``now``: the clock of the fetch and the test notification; ``environ``:
    where the files' secret variables are read (tests); ``progress``: called with each result
    as it comes (probes with network timeouts take seconds)."""
    when = now or datetime.now(UTC)
    results: list[CheckResult] = []

    def add(*found: CheckResult) -> None:
        for result in found:
            result = scrubbed(result)
            results.append(result)
            if progress is not None:
                progress(result)

    broker = check_broker(settings, timeout_s)
    add(broker)
    add(check_store(settings.database_url))
    if settings.ingest_database_url != settings.database_url:
        add(check_store(settings.ingest_database_url, "dedup memory", "FINSENT_INGEST_STATE_URL"))
    add(check_artifact(settings))
    add(*check_sources(settings, fetch_once=fetch_once, now=when, environ=environ))
    rules_result, rules = check_rules(settings)
    add(rules_result)
    if rules is None:
        fix = "fix the rules file first"
        add(CheckResult("slack", False, "not checked: the rules file is invalid", fix))
        add(CheckResult("email", False, "not checked: the rules file is invalid", fix))
    else:
        add(*check_slack(settings, rules, send_test=send_test, now=when, environ=environ))
        add(*check_email(settings, rules, send_test=send_test, now=when, environ=environ))
    add(check_partitions(settings, broker.ok, timeout_s))
    add(*check_disk(settings, min_free_bytes))
    return results
