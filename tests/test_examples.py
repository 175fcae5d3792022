"""The files in examples/ load through the real loaders: the sources file, the alert rules, the
replay feeds (which use every column replay reads, and the README's column table names exactly
those), and .env.example, whose every variable is a setting or a secret an example names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

import finsent.ingest.replay as replay_module
from finsent.alerts.rules import EmailChannel, SlackChannel, load_rules
from finsent.core.settings import Settings
from finsent.ingest.replay import ReplayStats, load
from finsent.ingest.sources import load_sources

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FEEDS = [EXAMPLES / "feed.csv", EXAMPLES / "feed.jsonl"]
NOW = datetime(2026, 6, 1, tzinfo=UTC)
# Read by the PostgreSQL driver itself (README: PostgreSQL), not by finsent.
DRIVER_VARIABLES = {"PGPASSWORD"}
ASSIGNMENT = re.compile(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


def test_the_sources_example_has_rss_atom_and_an_api_keyed_from_the_environment() -> None:
    sources = load_sources(EXAMPLES / "sources.yaml", environ={"NEWSAPI_KEY": "test-key"})
    assert {source.kind for source in sources} == {"rss", "atom", "api"}
    [api] = [source.api for source in sources if source.api is not None]
    assert api.api_key_env == "NEWSAPI_KEY"
    assert "test-key" not in (EXAMPLES / "sources.yaml").read_text(encoding="utf-8")


def test_the_sources_example_says_which_key_is_missing() -> None:
    with pytest.raises(ValueError, match="environment variable NEWSAPI_KEY is not set"):
        load_sources(EXAMPLES / "sources.yaml", environ={})


def test_the_rules_example_has_thresholds_channels_routes_grouping_and_inhibition() -> None:
    rules = load_rules(EXAMPLES / "rules.yaml")
    assert rules.series and rules.routes and rules.inhibit_market_wide
    assert rules.grouping.group_by == "family"
    assert {type(channel) for channel in rules.channels.values()} == {SlackChannel, EmailChannel}
    assert set(rules.channels) == {c for route in rules.routes for c in route.channels}
    # A per-series threshold really applies to its series only.
    base = load_rules(EXAMPLES / "rules.yaml").rule_for("overall", base_rule())
    assert rules.rule_for("topic:Financials", base_rule()).fire_z < base.fire_z
    assert rules.channels_for("ticker:AAPL", "critical") == ("slack-desk", "email-risk")


def base_rule() -> Any:
    from finsent.alerts.detector import SpikeRule

    return SpikeRule()


def secret_variables() -> set[str]:
    """The environment variables the example files name for their secrets."""
    rules = load_rules(EXAMPLES / "rules.yaml")
    names = {
        channel.webhook_env if isinstance(channel, SlackChannel) else channel.password_env
        for channel in rules.channels.values()
    }
    sources = load_sources(
        EXAMPLES / "sources.yaml", environ={"NEWSAPI_KEY": "example-newsapi-key-0123"}
    )
    return names | {s.api.api_key_env for s in sources if s.api and s.api.api_key_env}


def unknown_variables(text: str) -> list[str]:
    """Names assigned in an env file, commented out or not, that are neither a setting
    (``FINSENT_`` + a field of Settings) nor a secret an example names."""
    settings = {f"FINSENT_{field.upper()}" for field in Settings.model_fields}
    known = settings | secret_variables() | DRIVER_VARIABLES
    return [name for name in ASSIGNMENT.findall(text) if name not in known]


def test_every_variable_of_the_env_example_is_real() -> None:
    text = (EXAMPLES / ".env.example").read_text(encoding="utf-8")
    assert len(ASSIGNMENT.findall(text)) >= 8
    assert unknown_variables(text) == []
    # Every secret an example names is in it, for the user to fill in.
    assert secret_variables() <= set(ASSIGNMENT.findall(text))


def test_a_misspelt_variable_fails_the_check() -> None:
    assert unknown_variables("FINSENT_SOURCE_FILE=x\n# FINSENT_SLACK_WEBHOOK=y\n") == [
        "FINSENT_SOURCE_FILE",
        "FINSENT_SLACK_WEBHOOK",
    ]


def test_the_env_example_loads_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = dotenv_values(EXAMPLES / ".env.example")  # the uncommented lines
    assert values, "the example sets nothing"
    for name in list(values):
        if name.startswith("FINSENT_"):
            monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        assert value is not None, name
        monkeypatch.setenv(name, value)
    settings = Settings.load()
    assert settings.sources_file is not None and settings.alert_rules_file is not None
    # The files it names are the examples, relative to the repository root.
    assert (ROOT / settings.sources_file).samefile(EXAMPLES / "sources.yaml")
    assert (ROOT / settings.alert_rules_file).samefile(EXAMPLES / "rules.yaml")
    assert settings.user_agent == "finsent/0.1 (ops@example.com)"


# -- the replay feeds and the README's column table ---------------------------------------------


class Row(dict[str, Any]):
    """A row that has a value for any column asked for, and notes each one asked for."""

    def __init__(self, **values: Any) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, "x")

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().get(key, "x")


def columns_replay_reads() -> set[str]:
    """The columns replay's own code reads from a row, found by running it on one row."""
    row = Row(title="Bank shares fall", url="https://n.test/1", id="one", tickers="AAPL")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_module, "read_rows", lambda path: iter([(1, b"{}", row)]))
        items = load(Path("one.jsonl"), "feed", None, ReplayStats(), NOW)
    assert [item.id for item in items] == ["one"]
    return row.asked


def readme_columns() -> list[str]:
    """The first column of the README's table of feed columns."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| Column | Required | What it holds |") + 2
    columns = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        columns.append(line.split("|")[1].strip().strip("`"))
    return columns


def test_the_readme_table_names_every_column_replay_reads() -> None:
    columns = readme_columns()
    assert len(columns) == len(set(columns))
    assert set(columns) == columns_replay_reads()


@pytest.mark.parametrize("feed", FEEDS, ids=lambda path: path.name)
def test_each_example_feed_uses_every_column_and_replays_cleanly(feed: Path) -> None:
    from finsent.core.feed_files import read_rows

    rows = [row for _, _, row in read_rows(feed)]
    assert all(isinstance(row, dict) for row in rows)
    given = {key for row in rows for key, value in row.items() if value}  # type: ignore[union-attr]
    assert given == columns_replay_reads()

    dead: list[str] = []

    class Letters:
        def send(self, reason: str, raw: bytes, **_: object) -> None:
            dead.append(reason)

    stats = ReplayStats()
    items = load(feed, feed.stem, Letters(), stats, NOW)  # type: ignore[arg-type]
    assert dead == [] and len(items) == stats.read == len(rows)
    assert not any(item.time_inferred for item in items)  # every row states its time
