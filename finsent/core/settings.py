"""One settings object per process, built once from the environment and an optional config file.

This module is the one reader of the environment. Every fixed variable name is a field of
``Settings`` (``FINSENT_`` and the field's name, upper-cased); the variables a rules or sources
file names for its secrets (a channel's ``webhook_env``, a source's ``api_key_env``) are read
with ``secret_from_env``. Secrets are ``SecretStr`` so they never print; they are read from the
environment only, never from the config file.

Each stage takes a small frozen config of its own (e.g. ``AggregatorConfig`` beside the
aggregator), built from these settings where the stage is made (``finsent.app.stages``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from finsent.core.durations import WindowSpec, parse_duration
from finsent.core.errors import UserError, yaml_problem
from finsent.core.safety import SECRETS

ENV_PREFIX = "FINSENT_"
TOPIC_NAMES = (
    "news.raw",
    "news.scored",
    "news.keyed",  # scored stories repartitioned by series key, for the aggregators
    "sentiment.windows",
    "alerts",
    "news.dlq",
)
# The topics keyed by what their consumer keeps state for: news.keyed and sentiment.windows by
# series (the aggregator's windows, the alerter's baselines), alerts by notification group (the
# notifier's groups). Each consumer keeps that state per partition, so growing one of these
# topics moves keys to other partitions: `finsent kafka grow` moves the state with them.
KEYED_TOPICS = frozenset({"news.keyed", "sentiment.windows", "alerts"})
SECRET_FIELDS = frozenset({"slack_webhook_url", "smtp_password"})


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finsent"


def default_datasets_dir() -> Path:
    """Where training and evaluation data live unless ``FINSENT_DATASETS_DIR`` says: the
    user's data folder (XDG), like the cache beside it."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "finsent" / "datasets"


def secret_from_env(name: str, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The secret in the environment variable ``name`` (one a rules or sources file names),
    or None when it is unset or empty. ``environ``: the environment to read (tests). The
    log redactor (``core.safety.SECRETS``) learns every secret read here."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        return None
    SECRETS.register(value)
    return SecretStr(value)


class ConfigFileError(UserError, ValueError):
    """The config file is missing, unreadable, not a YAML mapping, or holds what it may not."""


class _YamlConfigSource(PydanticBaseSettingsSource):
    """Reads non-secret settings from the YAML file named by the ``config`` setting
    (``FINSENT_CONFIG``, or ``Settings.load(config_file=...)``), if any.

    The last source: it sees the ``config`` value the arguments and the environment gave,
    and both of those win over the file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigFileError(
                f"config file {path} cannot be read ({reason}): fix FINSENT_CONFIG or the file"
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigFileError(
                f"config file {path} is not valid YAML{yaml_problem(exc)}"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigFileError(f"config file {path} must hold a mapping")
        leaked = SECRET_FIELDS & set(data)
        if leaked:
            raise ConfigFileError(
                f"secrets must come from the environment, not {path}: {sorted(leaked)}"
            )
        if "config" in data:
            raise ConfigFileError(f"config file {path} cannot name another config file")
        return data


class Settings(BaseSettings):
    """Every setting, flat: a field ``kafka_port`` is ``FINSENT_KAFKA_PORT`` in the
    environment and ``kafka_port`` in the config file. Grouped below by the part of the
    pipeline that reads it; each stage's config (``from_settings``) takes one or two groups."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # -- Config file: a YAML mapping of these fields, below the environment in priority.
    config: Path | None = None

    # -- Paths and the store
    cache_dir: Path = Field(default_factory=default_cache_dir)
    # A SQLite store URL whose folder does not exist is refused (a typo would otherwise start
    # an empty store), unless the folder is under cache_dir or this is set.
    store_create_dirs: bool = False
    store_url: str = ""  # empty: SQLite under cache_dir
    # Backtests: the registry of runs the dashboard lists. Runs never write the live store;
    # empty: a SQLite file under cache_dir/backtests.
    backtest_registry_url: str = ""
    # Training and evaluation data; None: default_datasets_dir(), the user's data folder
    datasets_dir: Path | None = None

    # -- Kafka (runtime/kafka_io.py, the local broker)
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 0  # 0: kafka_port + 1
    kafka_bootstrap: str = ""  # empty: kafka_host:kafka_port (the local broker)
    kafka_heap: str = "512m"
    topic_prefix: str = ""  # isolates demo and backtest runs from the live topics
    # Scale-out: more partitions, and more processes per consumer group. Each aggregator keeps
    # one watermark per partition of news.keyed it owns.
    partitions: int = 1
    partitions_per_topic: dict[str, int] = Field(default_factory=dict)
    # Consumer groups. A dead member holds its partitions until the session times out; with an
    # instance id (static membership) a restarted process takes its place at once.
    session_timeout_ms: int = 10_000
    instance_id: str = ""

    # -- Micro-batches of the consuming stages (core/stages.py, runtime/runner.py)
    batch_max_size: int = 64
    batch_max_wait_ms: int = 200
    # Records per aggregator transaction: the store commit dominates, so fewer, larger ones.
    aggregator_batch_max: int = 8192
    # Windows per alerter transaction. Each batch pays a fenced store commit and a Kafka offset
    # commit: at 64 those were a third of its time in a backtest. The poll still returns what
    # has arrived at once, so live alerts do not wait for a batch to fill.
    alerter_batch_max: int = 1024

    # -- Ingest (ingest/admit.py, ingest/poller.py)
    ingest_state_url: str = ""  # dedup memory; empty: beside a SQLite store, else the store
    dedup_horizon_hours: float = 48.0  # near-duplicate and same-title horizon (24–72 h)
    # Stories the near-duplicate index keeps in memory at most (~4.4 KiB each: ~430 MiB): a
    # feed of more than this per horizon is compared with its newest stories only.
    dedup_max_indexed: Annotated[int, Field(ge=1)] = 100_000
    max_future_minutes: float = 360.0  # publish times further ahead are rejected
    sources_file: Path | None = None  # YAML list of feeds and APIs to poll
    user_agent: str = "finsent/0.1 (financial news monitor)"
    fetch_timeout_seconds: float = 10.0
    fetch_max_bytes: int = 5 * 1024 * 1024

    # -- Scorer (model/scorer.py): "attention" (the shipped model) or "lexicon" (the dictionary
    # baseline)
    scorer: str = "attention"
    model_artifact: Path | None = None  # None: the artifact shipped in the package
    model_backend: str = "auto"  # auto | onnx-int8 | torch-int8 | torch-fp32
    model_threads: int = 0  # 0: one per core
    # A story's scores never depend on its micro-batch: live runs and backtest replays then
    # agree exactly. Graphs with per-row activation scales (the shipped one) still batch;
    # older graphs score each story alone. Off: batched with any graph (model/infer.py).
    model_batch_invariant: bool = True
    # Run the model registry's promoted version (model/registry.py), checking this often, and
    # load a newly promoted one between batches. Off: always model_artifact.
    model_follow_registry: bool = True
    model_poll_seconds: float = Field(default=10.0, gt=0)

    # -- Retraining on analysts' corrections (model/retrain.py, model/gate.py)
    retrain_correction_weight: float = Field(default=8.0, ge=1)  # a correction counts this often
    retrain_holdout: float = Field(default=0.2, gt=0, lt=1)  # newest share of corrections
    retrain_base_examples: int = Field(default=4000, ge=0)  # base sample replayed beside them
    retrain_epochs: float = Field(default=1.0, gt=0)  # passes over sample and corrections
    retrain_lr: float = Field(default=3e-5, gt=0)  # the encoder's; the heads' is 10x
    # The gate: promote only if no fixed test split loses more than this (macro-F1 for
    # sentiment, accuracy for topic) and the held-out corrections gain more than min_gain
    retrain_tolerance: float = Field(default=0.01, ge=0)
    retrain_min_gain: float = Field(default=0.0, ge=0)
    retrain_auto_promote: bool = True  # False: a passing candidate waits for `model promote`
    retrain_min_corrections: int = Field(default=20, ge=1)  # new ones, for the scheduled retrain
    retrain_schedule: str = "0 3 * * *"  # cron (the retrainer's time zone: UTC)

    # -- Windows (stream/aggregation.py): "15m" is tumbling, "1h/5m" hopping (1 h long, every
    # 5 min)
    windows: Annotated[tuple[str, ...], NoDecode] = ("15m", "1h", "1d")
    grace_seconds: int = 300
    allowed_lateness_seconds: int = 3600  # after closing, late news restates a window this long
    # Caught up (no lag) with no story this long: event time follows the wall clock. 0: off
    idle_close_seconds: float = 0.0
    # "updates": also emit running figures of open windows (for live views), at most every
    # window_update_seconds; "final": only closed windows and restatements
    window_emit: Literal["updates", "final"] = "updates"
    window_update_seconds: float = 5.0
    top_headlines: int = 3

    # -- Alerts (alerts/alerter.py)
    # Glob patterns of the series keys the alert engine watches.
    alert_keys: Annotated[tuple[str, ...], NoDecode] = ("overall", "topic:*", "ticker:*")
    # The negative-surge detector (alerts/detector.py). Its defaults work from a few dozen to
    # tens of thousands of stories a day: each series is judged against its own history.
    alert_scales: Annotated[tuple[str, ...], NoDecode] = ("1h", "6h", "1d")  # judged together
    alert_half_life: str = "14d"  # how fast a series' baseline forgets
    alert_fire_z: float = 3.5  # after the correction for the number of scales
    alert_resolve_z: float = 2.0
    alert_min_count: float = Field(default=2.0, ge=0)  # novelty-weighted negative stories
    alert_min_ratio: float = Field(default=3.0, ge=0)  # times the negatives the baseline expects
    alert_floor: float = Field(default=0.5, ge=0, le=1)  # share of the surge's stories negative
    alert_share_z: float = 1.64  # how far that share must stand out against the series' own
    # The dashboard's baseline band: an EWMA over this many windows of the chart
    alert_baseline_windows: int = Field(default=24, ge=1)
    alert_window: str = ""  # the short window the detector reads; empty: the first of `windows`
    # An alert whose series has no window for this many windows resolves ("no data"); 0: never
    alert_no_data_windows: int = Field(default=96, ge=0)
    # Stories, windows, alert history, deliveries and dedup memory older than this are pruned
    # (hourly, by the notifier and the ingest); 0: kept forever
    retention_days: float = Field(default=90.0, ge=0)
    alert_rules_file: Path | None = None  # YAML thresholds, grouping, channels and routes

    # -- Watchlist (core/watchlist.py): the analyst's own tickers and company aliases (YAML),
    # read by the tagger, the alerter and the dashboard through their configs
    watchlist_file: Path | None = None

    # -- Notifications (alerts/notifier.py): the default channels' secrets, environment only.
    # A rules file's channels may name other variables (``secret``).
    slack_webhook_url: SecretStr | None = None
    smtp_password: SecretStr | None = None

    # -- Metrics and logs: each process serves Prometheus text on metrics_host:port. -1: the
    # stage's default port (see finsent.runtime.metrics); 0: any free port (logged); None: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = -1
    log_level: str = "INFO"
    kafka_log_level: str = "WARNING"  # kafka-python is chatty at INFO about every connection

    # -- Dashboard
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_refresh_seconds: float = 5.0
    # The time zone (an IANA name such as Europe/London) the dashboard shows times in; the
    # store and the records stay UTC
    dashboard_tz: str = "UTC"

    @field_validator("config", "datasets_dir", "watchlist_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # FINSENT_CONFIG= (empty) names no file

    @field_validator("store_url", "backtest_registry_url", "ingest_state_url")
    @classmethod
    def _check_database_url(cls, value: str, info: ValidationInfo) -> str:
        if value:
            check_database_url(
                value, info.data.get("cache_dir"), bool(info.data.get("store_create_dirs"))
            )
        return value

    @field_validator("alert_keys", "windows", "alert_scales", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("dashboard_tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        if not value.strip():
            return "UTC"  # FINSENT_DASHBOARD_TZ= (empty): the default
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name such as UTC or Europe/London") from None
        return value

    @field_validator("alert_scales")
    @classmethod
    def _check_scales(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one scale is needed, such as 1h,6h,1d")
        for text in value:
            parse_duration(text, positive=True)
        return value

    @field_validator("alert_half_life")
    @classmethod
    def _check_half_life(cls, value: str) -> str:
        parse_duration(value, positive=True)
        return value

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one window is needed")
        for text in value:
            WindowSpec.parse(text)
        return value

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        """The log redactor learns the settings' own secrets (webhook, SMTP password)."""
        for name in SECRET_FIELDS:
            value: SecretStr | None = getattr(self, name)
            if value is not None:
                SECRETS.register(value.get_secret_value())
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlConfigSource(settings_cls))

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """The settings from ``overrides``, then the environment, then ``config_file`` (default:
        the file ``FINSENT_CONFIG`` names, if any)."""
        if config_file is not None:
            overrides["config"] = config_file
        return cls(**overrides)

    # -- derived: paths and the store

    @property
    def database_url(self) -> str:
        return self.store_url or f"sqlite:///{self.cache_dir / 'finsent.db'}"

    @property
    def backtest_registry_database_url(self) -> str:
        return self.backtest_registry_url or f"sqlite:///{self.cache_dir / 'backtests' / 'runs.db'}"

    @property
    def ingest_database_url(self) -> str:
        """Dedup memory: its own SQLite file beside a SQLite store (one writer per file keeps
        ingest from waiting on the aggregator's locks), or the store itself on PostgreSQL."""
        if self.ingest_state_url:
            return self.ingest_state_url
        url = self.database_url
        if url.startswith("sqlite:///") and url.endswith(".db"):
            return url.removesuffix(".db") + "-ingest.db"
        return url

    # -- derived: Kafka

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one, with the run prefix."""
        if name not in TOPIC_NAMES:
            raise KeyError(f"unknown topic {name!r}; known: {TOPIC_NAMES}")
        return f"{self.topic_prefix}{name}"

    def partitions_for(self, name: str) -> int:
        return self.partitions_per_topic.get(name, self.partitions)

    # -- derived: windows and alerts

    @property
    def window_specs(self) -> tuple[WindowSpec, ...]:
        return tuple(WindowSpec.parse(text) for text in self.windows)

    @property
    def alert_window_spec(self) -> WindowSpec:
        return WindowSpec.parse(self.alert_window or self.windows[0])

    @property
    def alert_half_life_span(self) -> timedelta:
        return parse_duration(self.alert_half_life)

    @property
    def alert_scale_spans(self) -> tuple[timedelta, ...]:
        return tuple(parse_duration(text) for text in self.alert_scales)

    # -- secrets and child processes

    def secret(self, env_name: str, environ: Mapping[str, str] | None = None) -> SecretStr | None:
        """The secret in the environment variable ``env_name``: the settings' own for the
        default names (``FINSENT_SLACK_WEBHOOK_URL``, ``FINSENT_SMTP_PASSWORD``), else
        ``secret_from_env``."""
        field = env_name.removeprefix(ENV_PREFIX).lower()
        if env_name.startswith(ENV_PREFIX) and field in SECRET_FIELDS:
            value: SecretStr | None = getattr(self, field)
            return value
        return secret_from_env(env_name, environ)

    def child_env(self) -> dict[str, str]:
        """Environment for a child stage process, so it builds the same settings."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or name in SECRET_FIELDS:
                continue  # secrets reach children through the inherited environment only
            key = f"{ENV_PREFIX}{name.upper()}"
            if isinstance(value, tuple):
                env[key] = ",".join(value)
            elif isinstance(value, dict):
                env[key] = json.dumps(value)
            else:
                env[key] = str(value)
        return env


DATABASE_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or "
    "postgresql+psycopg://user:password@host:5432/database"
)


def check_database_url(url: str, cache_dir: Path | None, create_dirs: bool) -> None:
    """Raise ValueError unless ``url`` names a database SQLAlchemy knows and, for a SQLite file,
    a folder that exists (or may be made: under ``cache_dir``, or ``create_dirs``). The driver
    is not imported here: a missing one is the store's error, when it opens."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        parsed.get_dialect()  # the dialect's module, not its driver
    except ArgumentError as exc:
        scheme = url.split(":", 1)[0] if "://" in url else ""
        what = f"unknown database {scheme!r}" if scheme else "not a database URL"
        raise ValueError(f"{what}: use {DATABASE_URL_FORMS}") from exc
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = parsed.database.removeprefix("file:")  # a URI filename (?uri=true) names a file too
    folder = Path(path).absolute().parent
    if folder.is_dir() or create_dirs:
        return
    if cache_dir is not None and folder.is_relative_to(Path(cache_dir).absolute()):
        return  # finsent's own folder: made on first use, as for the default store
    raise ValueError(
        f"the folder {folder} does not exist: fix the path, create the folder, or set "
        "FINSENT_STORE_CREATE_DIRS=true to have it made"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This process's settings, built on first use and kept (the dashboard's pages use it)."""
    return Settings.load()
