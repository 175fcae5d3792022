"""One settings object per process, built once from the environment and an optional config file.

Every environment variable name lives here, prefixed ``FINSENT_``. Secrets are ``SecretStr`` so they
never print; they are read from the environment only, never from the config file.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from finsent.core.durations import WindowSpec

TOPIC_NAMES = (
    "news.raw",
    "news.scored",
    "news.keyed",  # scored stories repartitioned by series key, for the aggregators
    "sentiment.windows",
    "alerts",
    "news.dlq",
)
SECRET_FIELDS = frozenset({"slack_webhook_url", "smtp_password"})


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finsent"


class _YamlConfigSource(PydanticBaseSettingsSource):
    """Reads non-secret settings from the YAML file named by FINSENT_CONFIG, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("FINSENT_CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping")
        leaked = SECRET_FIELDS & set(data)
        if leaked:
            raise ValueError(
                f"secrets must come from the environment, not {path}: {sorted(leaked)}"
            )
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINSENT_", frozen=True, extra="forbid")

    # Paths
    cache_dir: Path = Field(default_factory=default_cache_dir)
    store_url: str = ""  # empty: SQLite under cache_dir

    # Kafka
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

    # Ingest
    ingest_state_url: str = ""  # dedup memory; empty: beside a SQLite store, else the store
    dedup_horizon_hours: float = 48.0  # near-duplicate and same-title horizon (24–72 h)
    max_future_minutes: float = 360.0  # publish times further ahead are rejected
    sources_file: Path | None = None  # YAML list of feeds and APIs to poll
    user_agent: str = "finsent/0.1 (financial news monitor)"
    fetch_timeout_seconds: float = 10.0
    fetch_max_bytes: int = 5 * 1024 * 1024

    # Scorer: "attention" (the shipped model) or "lexicon" (the dictionary baseline)
    scorer: str = "attention"
    model_artifact: Path | None = None  # None: the artifact shipped in the package
    model_backend: str = "auto"  # auto | onnx-int8 | torch-int8 | torch-fp32
    model_threads: int = 0  # 0: one per core
    # Score each story alone, so its scores never depend on its micro-batch: live runs and
    # backtest replays then agree exactly. Off: batched, about twice as fast (model/infer.py).
    model_batch_invariant: bool = True
    batch_max_size: int = 64
    batch_max_wait_ms: int = 200

    # Windows: "15m" is tumbling, "1h/5m" hopping (1 h long, every 5 min)
    windows: Annotated[tuple[str, ...], NoDecode] = ("15m", "1h", "1d")
    grace_seconds: int = 300
    allowed_lateness_seconds: int = 3600  # after closing, late news restates a window this long
    idle_close_seconds: float = 0.0  # 0: windows close on event time only
    # "updates": also emit running figures of open windows (for live views), at most every
    # window_update_seconds; "final": only closed windows and restatements
    window_emit: Literal["updates", "final"] = "updates"
    window_update_seconds: float = 5.0
    # Records per aggregator transaction: the store commit dominates, so fewer, larger ones.
    aggregator_batch_max: int = 2048
    top_headlines: int = 3

    # Alerts
    # Glob patterns of the series keys the alert engine watches.
    alert_keys: Annotated[tuple[str, ...], NoDecode] = ("overall", "topic:*", "ticker:*")
    alert_min_count: int = 5
    alert_min_baseline: int = 4
    alert_baseline_windows: int = 24
    alert_fire_z: float = 3.0
    alert_resolve_z: float = 1.0
    alert_floor: float = 0.4
    # Also fire when a series' count of negative stories surges this far (a z-score) above
    # its own expectation, whatever its share; None: off (alerts/detector.py).
    alert_volume_z: float | None = None
    alert_window: str = ""  # the window spec alerts watch; empty: the first of `windows`
    alert_pending_windows: int = 1  # consecutive surprising windows before an alert fires
    alert_rules_file: Path | None = None  # YAML thresholds, grouping, channels and routes

    # Metrics: each process serves Prometheus text on metrics_host:port. -1: the stage's
    # default port (see finsent.runtime.metrics); 0: any free port (logged); None: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = -1

    # Dashboard
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_refresh_seconds: float = 5.0

    # Secrets (environment only)
    slack_webhook_url: SecretStr | None = None
    smtp_password: SecretStr | None = None

    # Backtests: the registry of runs the dashboard lists. Runs never write the live store;
    # empty: a SQLite file under cache_dir/backtests.
    backtest_registry_url: str = ""

    log_level: str = "INFO"

    @field_validator("alert_keys", "windows", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one window is needed")
        for text in value:
            WindowSpec.parse(text)
        return value

    @property
    def window_specs(self) -> tuple[WindowSpec, ...]:
        return tuple(WindowSpec.parse(text) for text in self.windows)

    @property
    def alert_window_spec(self) -> WindowSpec:
        return WindowSpec.parse(self.alert_window or self.windows[0])

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

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

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

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one, with the run prefix."""
        if name not in TOPIC_NAMES:
            raise KeyError(f"unknown topic {name!r}; known: {TOPIC_NAMES}")
        return f"{self.topic_prefix}{name}"

    def partitions_for(self, name: str) -> int:
        return self.partitions_per_topic.get(name, self.partitions)

    def child_env(self) -> dict[str, str]:
        """Environment for a child stage process, so it builds the same settings."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or name in SECRET_FIELDS:
                continue  # secrets reach children through the inherited environment only
            key = f"FINSENT_{name.upper()}"
            if isinstance(value, tuple):
                env[key] = ",".join(value)
            elif isinstance(value, dict):
                env[key] = json.dumps(value)
            else:
                env[key] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
