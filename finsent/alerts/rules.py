"""Alert rules from YAML: thresholds per series, grouping, silencing defaults, channels, routes.

Validated on load; an error names the file and line. Secrets never go in the file: a channel
names the environment variable that holds its webhook URL or password.

    defaults: {fire_z: 3.5, resolve_z: 2.0, min_count: 2, min_ratio: 3, floor: 0.5, share_z: 1.64}
    series:                      # per-key overrides; the first matching glob wins
      - {match: "topic:Financials", fire_z: 3.0}
      - {watchlist: true, min_count: 2}   # the watchlist's tickers (core/watchlist.py)
      - {match: "overall", min_ratio: 2}
    grouping: {group_by: key, group_wait: 30s, group_interval: 5m, repeat_interval: 4h}
    inhibit_market_wide: true    # a firing `overall` alert mutes topic alerts of its window
    dashboard_url: http://127.0.0.1:8501
    channels:
      slack-ops: {type: slack, webhook_env: FINSENT_SLACK_WEBHOOK_URL}
      email-risk: {type: email, host: smtp.example.com, port: 587, security: starttls,
                   username: alerts, password_env: FINSENT_SMTP_PASSWORD,
                   sender: alerts@example.com, to: [risk@example.com]}
    routes:                      # the first matching route picks the channels
      - {watchlist: true, channels: [email-risk]}
      - {match: "*", severity: [critical], channels: [slack-ops, email-risk]}
      - {match: "*", channels: [slack-ops]}
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from finsent.alerts.detector import SpikeRule
from finsent.core.durations import parse_duration
from finsent.core.errors import UserError, yaml_problem
from finsent.core.vocabulary import SEVERITIES, Severity


class RulesError(UserError, ValueError):
    """The rules file (FINSENT_ALERT_RULES_FILE) cannot be read or is not valid; the message
    names the file, and the line and field of each problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    fire_z: float | None = Field(None, gt=0)
    resolve_z: float | None = None
    critical_z: float | None = Field(None, gt=0)
    min_count: float | None = Field(None, ge=0)
    min_ratio: float | None = Field(None, ge=0)
    floor: float | None = Field(None, ge=0, le=1)
    share_z: float | None = None

    def apply(self, rule: SpikeRule) -> SpikeRule:
        thresholds = Thresholds.model_fields
        changes = {k: v for k, v in self.model_dump().items() if v is not None and k in thresholds}
        return SpikeRule(**{**rule.__dict__, **changes})


class SeriesRule(Thresholds):
    match: str  # a glob of series keys; "*" when only ``watchlist`` is given
    watchlist: bool = False  # true: only the watchlist's series (of those ``match`` takes)

    @model_validator(mode="before")
    @classmethod
    def _watchlist_matches_all(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("watchlist") is True and "match" not in data:
            return {**data, "match": "*"}
        return data


class Grouping(_Model):
    group_by: Literal["key", "family"] = "key"  # family: overall / topic / ticker / source
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)

    @field_validator("group_wait", "group_interval", "repeat_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class SlackChannel(_Model):
    type: Literal["slack"]
    webhook_env: str = "FINSENT_SLACK_WEBHOOK_URL"


class EmailChannel(_Model):
    type: Literal["email"]
    host: str
    port: int = Field(587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str = "FINSENT_SMTP_PASSWORD"
    sender: str
    to: tuple[str, ...] = Field(min_length=1)


class Route(_Model):
    match: str = "*"
    watchlist: bool = False  # true: only alerts on the watchlist's series
    severity: tuple[Severity, ...] = SEVERITIES
    channels: tuple[str, ...] = Field(min_length=1)


class AlertRules(_Model):
    defaults: Thresholds = Thresholds()
    series: tuple[SeriesRule, ...] = ()
    grouping: Grouping = Grouping()
    inhibit_market_wide: bool = True
    dashboard_url: str = "http://127.0.0.1:8501"
    channels: dict[str, SlackChannel | EmailChannel] = {}
    routes: tuple[Route, ...] = ()
    # The watchlist's series keys (``ticker:ACME``): not in the file, bound by with_watchlist.
    _watchlist: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _routes_name_known_channels(self) -> AlertRules:
        for i, route in enumerate(self.routes):
            unknown = [c for c in route.channels if c not in self.channels]
            if unknown:
                raise ValueError(f"routes.{i}: unknown channel(s) {unknown}")
        return self

    def with_watchlist(self, keys: Iterable[str]) -> AlertRules:
        """These rules, where ``watchlist: true`` matches the series ``keys``."""
        bound = self.model_copy()
        bound._watchlist = frozenset(keys)
        return bound

    @property
    def watchlist(self) -> frozenset[str]:
        return self._watchlist

    def _matches(self, key: str, match: str, watchlist: bool) -> bool:
        return fnmatch.fnmatchcase(key, match) and (not watchlist or key in self._watchlist)

    def rule_for(self, key: str, base: SpikeRule) -> SpikeRule:
        rule = self.defaults.apply(base)
        for series in self.series:
            if self._matches(key, series.match, series.watchlist):
                return series.apply(rule)
        return rule

    def channels_for(self, key: str, severity: str) -> tuple[str, ...]:
        for route in self.routes:
            if self._matches(key, route.match, route.watchlist) and severity in route.severity:
                return route.channels
        return ()


def load_rules(path: Path) -> AlertRules:
    """Read and validate a rules file; errors say which line is wrong and why."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RulesError(
            f"rules file {path} cannot be read ({reason}): fix FINSENT_ALERT_RULES_FILE or the file"
        ) from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"rules file {path} is not valid YAML{yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}:1: the rules file must hold a mapping")
    try:
        return AlertRules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = [part for part in error["loc"] if not _is_union_tag(part)]
            named = re.match(r"Value error, ([\w.]+): ", error["msg"])
            if not loc and named:  # a whole-file check that names the path it is about
                loc = [int(p) if p.isdigit() else p for p in named.group(1).split(".")]
            line = _line_of(root, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{line}: {where}: {error['msg']}")
        raise RulesError("\n".join(problems)) from None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"SlackChannel", "EmailChannel", "slack", "email"}


def _line_of(node: Any, loc: list[Any]) -> int:
    """The 1-based line of the deepest YAML node along ``loc`` that exists."""
    line = (node.start_mark.line + 1) if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
