"""Rules files and the pure dispatcher: grouping, repeats, acks, silences, inhibition, routes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records import alert as make_alert
from support.records import headline

from finsent.alerts.detector import SpikeRule
from finsent.alerts.dispatch import Dispatcher, Group
from finsent.alerts.rules import AlertRules, RulesError, load_rules
from finsent.alerts.silences import Silence
from finsent.core.records import Alert

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RULES = AlertRules.model_validate(
    {
        "grouping": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"},
        "channels": {
            "slack": {"type": "slack"},
            "mail": {"type": "email", "host": "smtp.test", "sender": "a@test", "to": ["r@test"]},
        },
        "routes": [
            {"match": "*", "severity": ["critical"], "channels": ["slack", "mail"]},
            {"match": "*", "channels": ["slack"]},
        ],
    }
)


def alert(key: str = "topic:Financials", state: str = "firing", **kw) -> Alert:
    return make_alert(
        id=kw.pop("id", f"id-{key}"),
        key=key,
        state=state,
        window_start=kw.pop("window_start", T0),
        headlines=(headline(id="h", title="Bank shares plunge", score=-0.9),),
        **kw,
    )


def test_rules_file_loads_and_applies_per_series_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "defaults: {fire_z: 3.5}\n"
        "series:\n"
        "  - {match: 'topic:Financials', fire_z: 2.5, min_ratio: 2}\n"
        "grouping: {group_by: family, group_wait: 10s}\n"
        "channels: {ops: {type: slack, webhook_env: OPS_HOOK}}\n"
        "routes: [{match: 'topic:*', channels: [ops]}]\n"
    )
    rules = load_rules(path)
    assert rules.rule_for("topic:Financials", SpikeRule()).fire_z == 2.5
    assert rules.rule_for("topic:Financials", SpikeRule()).min_ratio == 2
    assert rules.rule_for("ticker:SIVB", SpikeRule()).fire_z == 3.5
    assert rules.grouping.group_wait == timedelta(seconds=10)
    assert rules.channels_for("topic:Earnings", "warning") == ("ops",)
    assert rules.channels_for("ticker:SIVB", "critical") == ()


def test_rules_match_the_watchlist_series_with_watchlist_true(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "series:\n"
        "  - {watchlist: true, fire_z: 2.0}\n"
        "  - {match: 'ticker:*', watchlist: true, min_count: 2}\n"
        "  - {match: 'ticker:*', fire_z: 4.0}\n"
        "channels: {desk: {type: slack, webhook_env: DESK_HOOK}, ops: {type: slack}}\n"
        "routes: [{watchlist: true, channels: [desk]}, {channels: [ops]}]\n"
    )
    unbound = load_rules(path)
    rules = unbound.with_watchlist({"ticker:ACME"})

    assert rules.watchlist == {"ticker:ACME"} and unbound.watchlist == frozenset()
    assert rules.rule_for("ticker:ACME", SpikeRule()).fire_z == 2.0  # the first that matches
    assert rules.rule_for("ticker:BETA", SpikeRule()).fire_z == 4.0
    assert rules.channels_for("ticker:ACME", "warning") == ("desk",)
    assert rules.channels_for("ticker:BETA", "warning") == ("ops",)
    # Unbound (no watchlist file), a watchlist rule matches nothing.
    assert unbound.rule_for("ticker:ACME", SpikeRule()).fire_z == 4.0
    assert unbound.channels_for("ticker:ACME", "warning") == ("ops",)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("defaults:\n  fire_z: -1\n", 2, "defaults.fire_z"),
        ("series:\n  - {match: 'x'}\n  - {fire_z: 2}\n", 3, "series.1.match"),
        ("grouping:\n  group_wait: soon\n", 2, "not a duration"),
        ("channels:\n  ops: {type: pager}\n", 2, "channels.ops"),
        ("channels: {}\nroutes:\n  - {channels: [nowhere]}\n", 3, "unknown channel"),
        ("typo_key: 1\n", 1, "typo_key"),
    ],
)
def test_rules_errors_name_the_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    message = str(info.value)
    assert f"rules.yaml:{line}:" in message and fragment in message


def test_a_secret_in_the_rules_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("channels: {ops: {type: slack, webhook_url: 'https://hooks.slack.com/x'}}\n")
    with pytest.raises(RulesError, match="webhook_url"):
        load_rules(path)


def test_group_waits_then_sends_once_then_resolves() -> None:
    d = Dispatcher(RULES)
    d.receive(alert(), T0)
    assert d.flush(T0 + 10 * S, [], set()) == []  # still in group_wait
    [sent] = d.flush(T0 + 30 * S, [], set())
    assert (sent.channel, sent.notification.kind) == ("slack", "firing")
    assert sent.notification.dashboard_url.endswith("id=id-topic:Financials")
    assert d.flush(T0 + 60 * S, [], set()) == []  # nothing new
    d.receive(alert(state="resolved"), T0 + 120 * S)
    assert d.flush(T0 + 121 * S, [], set()) == []  # changes wait for the group interval
    [resolved] = d.flush(T0 + 330 * S, [], set())
    assert resolved.notification.kind == "resolved"
    assert d.groups == {}


def test_critical_alerts_route_to_more_channels_and_ids_are_stable() -> None:
    first, second = Dispatcher(RULES), Dispatcher(RULES)
    for d in (first, second):
        d.receive(alert(severity="critical"), T0)
    a = first.flush(T0 + 30 * S, [], set())
    b = second.flush(T0 + 31 * S, [], set())
    assert [o.channel for o in a] == ["slack", "mail"]
    assert {o.notification.id for o in a} == {o.notification.id for o in b}  # same content


def test_repeat_interval_resends_unless_acknowledged() -> None:
    d = Dispatcher(RULES)
    d.receive(alert(), T0)
    d.flush(T0 + 30 * S, [], set())
    [repeat] = d.flush(T0 + 30 * S + timedelta(hours=1), [], set())
    assert repeat.notification.kind == "repeat"
    acked = Dispatcher(RULES)
    acked.receive(alert(), T0)
    acked.flush(T0 + 30 * S, [], set())
    assert acked.flush(T0 + 30 * S + timedelta(hours=1), [], {"id-topic:Financials"}) == []


def test_a_repeats_id_is_its_content_and_the_time_it_was_due_not_the_clock() -> None:
    d = Dispatcher(RULES)
    d.receive(alert(), T0)
    d.flush(T0 + 30 * S, [], set())
    saved, _ = d.take_changes()
    due = T0 + 30 * S + timedelta(hours=1)
    repeats = []
    for late in (timedelta(0), timedelta(minutes=7)):  # the same state, flushed at two times
        restored = Dispatcher(RULES, {k: Group.from_json(v) for k, v in saved.items()})
        [repeat] = restored.flush(due + late, [], set())
        repeats.append(repeat.notification)
    assert repeats[0].kind == "repeat" and repeats[0].id == repeats[1].id


def test_silenced_alerts_are_not_notified() -> None:
    d = Dispatcher(RULES)
    d.receive(alert(), T0)
    silence = Silence(matcher="topic:*", starts_at=T0, ends_at=T0 + timedelta(hours=1))
    assert d.flush(T0 + 30 * S, [silence], set()) == []
    other = Silence(matcher="ticker:*", starts_at=T0, ends_at=T0 + timedelta(hours=1))
    d2 = Dispatcher(RULES)
    d2.receive(alert(), T0)
    assert len(d2.flush(T0 + 30 * S, [other], set())) == 1


def test_market_wide_alert_mutes_topic_alerts_of_its_window() -> None:
    d = Dispatcher(RULES)
    d.receive(alert("overall"), T0)
    d.receive(alert("topic:Financials"), T0)
    d.receive(alert("topic:Macro", window_start=T0 + timedelta(hours=2)), T0)
    sent = d.flush(T0 + 30 * S, [], set())
    assert sorted(o.notification.group_key for o in sent) == ["overall", "topic:Macro"]


def test_pending_alerts_are_not_notified_and_state_round_trips() -> None:
    d = Dispatcher(RULES)
    d.receive(alert(state="pending"), T0)
    assert d.groups == {}
    d.receive(alert(), T0)
    put, _ = d.take_changes()
    restored = Dispatcher(RULES, {k: Group.from_json(v) for k, v in put.items()})
    assert len(restored.flush(T0 + 30 * S, [], set())) == 1
    assert replace(alert(), state="resolved").id == alert().id


def test_the_dispatcher_imports_no_http_or_smtp_code() -> None:
    # A fresh interpreter: this test process has imported the notifiers already.
    senders = ("httpx", "smtplib", "finsent.alerts.notify.slack", "finsent.alerts.notify.email")
    probe = (
        "import sys, finsent.alerts.dispatch; "
        f"print(sorted(m for m in {senders!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
