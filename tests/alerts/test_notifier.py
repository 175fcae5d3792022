"""The notifier's logic in process, driven by the test kit (no broker), with fake notifiers in
place of Slack and email: alert events are grouped, silenced alerts are held back, transient
failures are retried with backoff and permanent ones are not, a failed channel is tried again
after the group interval, and the delivery log stops a re-send after a restart. Then, against a
real broker, two notifier processes in one group with a kill -9 between a send and its commit:
each notification reaches each channel exactly once."""

from __future__ import annotations

import itertools
import json
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError
from support.notifications import FakeSleep
from support.notify_loopback import Reply, WebhookServer
from support.records import T0, alert
from support.stage_logic import DyingStore, ProcessKilled, isolated_settings, notifier
from support.stages import StageProcesses, wait_until

from finsent.alerts import notifier as notifier_stage
from finsent.alerts.notify.model import DeliveryError, Notification
from finsent.alerts.silences import new_silence
from finsent.core.records import Alert, encode
from finsent.core.settings import Settings
from finsent.runtime.kafka_io import describe_groups, ensure_topics, group_id
from finsent.runtime.store import Commit, Store, deliveries, silences
from finsent.runtime.testing import MemoryDeadLetters, Run, run_logic

NOW = T0 + timedelta(minutes=20)  # the wall clock: the alerts' windows have just closed
RULES = """
grouping: {group_by: family, group_wait: 0s, group_interval: 5m, repeat_interval: 4h}
channels:
  ops: {type: slack}
  risk: {type: email, host: smtp.test, sender: finsent@test, to: [risk@test]}
routes:
  - {match: "*", severity: [critical], channels: [ops, risk]}
  - {match: "*", channels: [ops]}
"""


class FakeNotifier:
    """A channel that records what it was sent, and fails the next sends as told."""

    def __init__(self, channel: str, failures: Sequence[DeliveryError] = ()) -> None:
        self.channel = channel
        self.failures = list(failures)  # raised by the next sends, in order
        self.sent: list[Notification] = []
        self.attempts = 0

    def send(self, notification: Notification) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification)


def transient(message: str = "HTTP 503: try again") -> DeliveryError:
    return DeliveryError(message, transient=True)


def permanent(message: str = "HTTP 400: invalid_payload") -> DeliveryError:
    return DeliveryError(message, transient=False)


_WAITS = [FakeSleep()]  # the running test's: every logic ``notify`` builds sleeps on it


@pytest.fixture(autouse=True)
def waits() -> Iterator[FakeSleep]:
    """The retry backoff's waits, recorded instead of slept."""
    _WAITS[0] = FakeSleep()
    yield _WAITS[0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return isolated_settings(tmp_path, alert_rules_file=rules)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.database_url)


def notify(
    settings: Settings,
    store: Store,
    alerts: Sequence[Alert] | Mapping[int, Sequence[Alert]],
    *channels: FakeNotifier,
    clock: Callable[[], datetime] = lambda: NOW,
    batch_size: int = 64,
) -> Run:
    logic = notifier(settings, store, {c.channel: c for c in channels}, sleep=_WAITS[0])
    return run_logic(logic, alerts, store, clock, stage="notifier", batch_size=batch_size)


def ticking(start: datetime, step: timedelta) -> Callable[[], datetime]:
    """A wall clock that moves on ``step`` at each batch."""
    calls = itertools.count()
    return lambda: start + next(calls) * step


def told(channel: FakeNotifier) -> list[tuple[str, str, list[str]]]:
    """What a channel was sent: (group, kind, the alerts' keys) per notification."""
    return [(n.group_key, n.kind, [a.key for a in n.alerts]) for n in channel.sent]


def logged(store: Store) -> list[tuple[str, str, str, int]]:
    rows = store.query(deliveries)
    return sorted((r["channel"], r["kind"], r["status"], r["attempts"]) for r in rows)


def test_alerts_are_grouped_and_routed_by_severity(settings: Settings, store: Store) -> None:
    ops, risk = FakeNotifier("ops"), FakeNotifier("risk")
    events = [
        alert(id="fin", key="topic:Financials"),
        alert(id="earn", key="topic:Earnings"),
        alert(id="acme", key="ticker:ACME", severity="critical"),
    ]

    run = notify(settings, store, events, ops, risk)

    assert told(ops) == [
        ("ticker", "firing", ["ticker:ACME"]),
        ("topic", "firing", ["topic:Earnings", "topic:Financials"]),  # one family, one message
    ]
    assert told(risk) == [("ticker", "firing", ["ticker:ACME"])]  # critical only
    assert logged(store) == [
        ("ops", "firing", "delivered", 1),
        ("ops", "firing", "delivered", 1),
        ("risk", "firing", "delivered", 1),
    ]
    assert run.outputs == [] and run.offsets == {("alerts", 0): 3}


def test_a_resolved_alert_sends_a_resolved_notice_after_its_firing_one(
    settings: Settings, store: Store
) -> None:
    ops = FakeNotifier("ops")
    fired = alert(id="fin")
    resolved = alert(id="fin", state="resolved", window_start=T0 + timedelta(minutes=30))

    # One alert per batch, the clock ten minutes on at each: past the group interval.
    every_ten_minutes = ticking(NOW, timedelta(minutes=10))
    notify(settings, store, [fired, resolved], ops, clock=every_ten_minutes, batch_size=1)

    assert told(ops) == [
        ("topic", "firing", ["topic:Financials"]),
        ("topic", "resolved", ["topic:Financials"]),
    ]
    assert store.load_state("notifier") == {}  # a resolved, told group is gone


def test_silenced_alerts_are_not_notified(settings: Settings, store: Store) -> None:
    ops = FakeNotifier("ops")
    store.add_silence(
        new_silence(
            "ticker:*", "2h", severity=None, author="ops", comment="index rebalance", now=T0
        ).to_row()
    )
    store.add_silence(  # over before now: mutes nothing
        new_silence(
            "topic:*",
            "1h",
            severity=None,
            author="ops",
            comment="old",
            now=NOW - timedelta(hours=2),
        ).to_row()
    )

    notify(settings, store, [alert(id="acme", key="ticker:ACME"), alert(id="fin")], ops)

    assert told(ops) == [("topic", "firing", ["topic:Financials"])]


def test_a_transient_failure_is_retried_with_backoff_until_delivered(
    settings: Settings, store: Store, waits: FakeSleep
) -> None:
    ops = FakeNotifier("ops", failures=[transient(), transient()])

    notify(settings, store, [alert()], ops)

    assert ops.attempts == 3 and len(ops.sent) == 1
    assert waits.waits == [1, 2]  # exponential backoff between the attempts
    assert logged(store) == [("ops", "firing", "delivered", 3)]


def test_a_transient_failure_gives_up_after_its_attempts(
    settings: Settings, store: Store, waits: FakeSleep
) -> None:
    ops = FakeNotifier("ops", failures=[transient()] * 5)

    notify(settings, store, [alert()], ops)

    assert ops.attempts == 4 and ops.sent == []
    assert waits.waits == [1, 2, 4]
    [row] = store.query(deliveries)
    assert (row["status"], row["last_error"]) == ("failed", "HTTP 503: try again")


def test_a_permanent_failure_is_not_retried_at_once_but_after_the_group_interval(
    settings: Settings, store: Store, waits: FakeSleep
) -> None:
    ops, risk = FakeNotifier("ops"), FakeNotifier("risk", failures=[permanent()])
    critical = [alert(severity="critical")]

    notify(settings, store, critical, ops, risk)

    assert risk.attempts == 1 and waits.waits == []
    assert logged(store) == [("ops", "firing", "delivered", 1), ("risk", "firing", "failed", 1)]

    # A restarted notifier, past the group interval: nothing new to read, but the failed
    # channel is due again; the channel that has it already is skipped by the delivery log.
    ops_later, risk_later = FakeNotifier("ops"), FakeNotifier("risk")
    later = NOW + timedelta(minutes=6)
    notify(settings, store, critical, ops_later, risk_later, clock=lambda: later)

    assert ops_later.attempts == 0
    assert told(risk_later) == [("topic", "firing", ["topic:Financials"])]
    assert risk_later.sent[0].id == ops.sent[0].id  # the same notification, sent once each
    assert logged(store) == [
        ("ops", "firing", "delivered", 1),
        ("risk", "firing", "delivered", 1),
    ]


def test_the_delivery_log_stops_a_re_send_after_a_restart(settings: Settings) -> None:
    ops = FakeNotifier("ops")
    # Delivered, then the process dies before it commits the batch: the alert is read again.
    dying = DyingStore(settings.database_url, dies_at=1)
    with pytest.raises(ProcessKilled):
        notify(settings, dying, [alert()], ops)
    assert len(ops.sent) == 1
    store = Store(settings.database_url)
    assert store.load_offsets("notifier") == {}  # nothing of the batch committed

    ops_restarted = FakeNotifier("ops")
    run = notify(settings, store, [alert()], ops_restarted)

    assert ops_restarted.attempts == 0  # the same notification id: logged as delivered
    assert logged(store) == [("ops", "firing", "delivered", 1)]
    assert run.offsets == {("alerts", 0): 1}


def test_two_members_each_flush_and_save_only_the_groups_of_their_own_partition(
    settings: Settings, store: Store
) -> None:
    # One member read both partitions and told both groups; the group then rebalances.
    first = FakeNotifier("ops")
    alerts_by_partition = {0: [alert(id="fin")], 1: [alert(id="acme", key="ticker:ACME")]}
    notify(settings, store, alerts_by_partition, first)
    assert sorted(told(first)) == [
        ("ticker", "firing", ["ticker:ACME"]),
        ("topic", "firing", ["topic:Financials"]),
    ]

    # Two members, one partition each, when both groups are due a repeat.
    due = NOW + timedelta(hours=4, minutes=1)
    members = {}
    for partition in (0, 1):
        ops = FakeNotifier("ops")
        logic = notifier(settings, store, {"ops": ops}, sleep=_WAITS[0])
        logic.assigned([("alerts", partition)])
        _, commit = logic.process([], due, MemoryDeadLetters("notifier"))
        assert commit is not None
        members[partition] = (told(ops), sorted(commit.state_put))

    assert members[0] == ([("topic", "repeat", ["topic:Financials"])], ["0/topic"])
    assert members[1] == ([("ticker", "repeat", ["ticker:ACME"])], ["1/ticker"])


def test_groups_saved_before_partitions_owned_them_are_adopted_by_partition_0(
    settings: Settings, store: Store
) -> None:
    ops = FakeNotifier("ops")
    notify(settings, store, [alert(id="fin")], ops)
    [(key, value)] = store.load_state("notifier").items()
    # The row as an older notifier saved it: under the bare group key.
    store.commit(Commit(stage="notifier", state_put={"topic": value}, state_delete={key}))

    later = NOW + timedelta(hours=4, minutes=1)
    notify(settings, store, [alert(id="fin")], ops, clock=lambda: later)

    assert [n.kind for n in ops.sent] == ["firing", "repeat"]  # the group was not lost
    assert set(store.load_state("notifier")) == {"0/topic"}


def test_a_repeat_sent_before_a_crash_is_not_sent_again_after_the_restart(
    settings: Settings,
) -> None:
    ops = FakeNotifier("ops")
    notify(settings, Store(settings.database_url), [alert()], ops)

    # The repeat goes out, then the process dies before its batch commit; it restarts a
    # minute later (another wall clock) from the same stored state.
    due = NOW + timedelta(hours=4, minutes=1)
    dying = DyingStore(settings.database_url, dies_at=1)
    with pytest.raises(ProcessKilled):
        notify(settings, dying, [alert()], ops, clock=lambda: due)
    restarted = FakeNotifier("ops")
    notify(
        settings,
        Store(settings.database_url),
        [alert()],
        restarted,
        clock=lambda: due + timedelta(minutes=1),
    )

    assert [n.kind for n in ops.sent] == ["firing", "repeat"]
    assert restarted.attempts == 0  # the same repeat: its id is the time it was due


def test_a_failed_resolved_notice_is_tried_again_after_the_group_interval(
    settings: Settings, store: Store
) -> None:
    ops = FakeNotifier("ops")
    fired = alert(id="fin")
    resolved = alert(id="fin", state="resolved", window_start=T0 + timedelta(minutes=30))
    notify(settings, store, [fired], ops)
    ops.failures = [permanent()]  # the resolved notice fails

    notify(settings, store, [fired, resolved], ops, clock=lambda: NOW + timedelta(minutes=10))
    assert told(ops) == [("topic", "firing", ["topic:Financials"])]

    later = NOW + timedelta(minutes=16)  # past the group interval
    notify(settings, store, [fired, resolved], ops, clock=lambda: later)

    assert told(ops) == [
        ("topic", "firing", ["topic:Financials"]),
        ("topic", "resolved", ["topic:Financials"]),
    ]
    assert store.load_state("notifier") == {}  # told at last, the group is gone
    assert logged(store) == [("ops", "firing", "delivered", 1), ("ops", "resolved", "delivered", 1)]


def test_the_notifier_prunes_the_store_by_its_retention_at_most_hourly(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = isolated_settings(tmp_path, alert_rules_file=rules, retention_days=1)
    store = Store(settings.database_url)
    ended = NOW - timedelta(minutes=30)
    store.add_silence(
        new_silence(
            "ticker:*",
            "1h",
            severity=None,
            author="ops",
            comment="",
            now=ended - timedelta(hours=1),
        ).to_row()
    )
    logic = notifier(settings, store, {})
    logic.assigned([("alerts", 0)])
    dead = MemoryDeadLetters("notifier")

    logic.process([], NOW + timedelta(hours=23), dead)  # ended within the retention: kept
    assert len(store.query(silences)) == 1
    logic.process([], NOW + timedelta(hours=23, minutes=45), dead)  # past it; not due yet
    assert len(store.query(silences)) == 1
    logic.process([], NOW + timedelta(hours=24, minutes=1), dead)  # an hour on: pruned
    assert store.query(silences) == []


def test_the_channels_secrets_come_from_the_variables_the_rules_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "channels:\n"
        "  team: {type: slack, webhook_env: TEAM_WEBHOOK}\n"
        "  ops: {type: slack, webhook_env: OPS_WEBHOOK}\n"
        "  risk: {type: email, host: smtp.test, username: finsent, password_env: RISK_SMTP,\n"
        "         sender: finsent@test, to: [risk@test]}\n",
        encoding="utf-8",
    )
    settings = isolated_settings(tmp_path, alert_rules_file=rules)
    environ = {"TEAM_WEBHOOK": "https://hooks.example/T0/team-secret", "RISK_SMTP": "pw-secret"}

    config = notifier_stage.NotifierConfig.from_settings(settings, environ)
    notifiers = notifier_stage.build_notifiers(config)

    assert sorted(config.secrets) == ["RISK_SMTP", "TEAM_WEBHOOK"]  # OPS_WEBHOOK is unset
    assert "team-secret" not in repr(config) and "pw-secret" not in repr(config)
    assert sorted(notifiers) == ["risk", "team"]  # a channel without its secret is left out


# -- against a real broker -------------------------------------------------------------------

TWO_CHANNELS = """
grouping: {group_by: key, group_wait: 0s, group_interval: 5m, repeat_interval: 4h}
channels:
  ops: {type: slack, webhook_env: OPS_WEBHOOK}
  risk: {type: slack, webhook_env: RISK_WEBHOOK}
routes:
  - {match: "*", channels: [ops, risk]}
"""
SERIES = [f"ticker:T{i:02d}" for i in range(12)]  # one group each


def members_with_partitions(settings: Settings) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        [group] = describe_groups(admin, [group_id(settings, "notifier")])
    except KafkaError:  # a coordinator still loading
        return 0
    finally:
        admin.close()
    if group.state != "Stable":
        return 0
    return sum(1 for m in group.members if m.member_assignment.assignment)


def posted(path: str, body: bytes) -> tuple[str, str]:
    """(channel, group) of a Slack post: the header reads "FIRING (warning): <group>"."""
    header = json.loads(body)["blocks"][0]["text"]["text"]
    return path.split("/")[1], header.split(": ", 1)[1]


@pytest.mark.kafka
@pytest.mark.slow
def test_two_notifiers_and_a_kill_9_between_send_and_commit_notify_once_per_channel(
    pipeline_settings: Settings, stages: StageProcesses, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TWO_CHANNELS)
    settings = pipeline_settings.model_copy(
        update={
            "alert_rules_file": rules,
            "partitions_per_topic": {"alerts": 4},
            "batch_max_wait_ms": 100,
            "metrics_port": 0,
        }
    )
    stages.env.update(settings.child_env())
    ensure_topics(settings)
    store = Store(settings.database_url)
    # The first post is answered only after 8 s: its sender is killed while it waits, after
    # the webhook took the message and before the batch's commit.
    with WebhookServer(replies=[Reply(delay_s=8)]) as slack:
        stages.env["OPS_WEBHOOK"] = slack.url("/ops/secret")
        stages.env["RISK_WEBHOOK"] = slack.url("/risk/secret")
        for member in ("a", "b"):
            stages.env["FINSENT_INSTANCE_ID"] = member  # static membership
            stages.start(f"notifier-{member}", "notifier")
        wait_until(
            lambda: members_with_partitions(settings) == 2, 90, "two members with partitions",
            context=stages.tails,
        )  # fmt: skip
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        for i, key in enumerate(SERIES):
            event = alert(id=f"a{i}", key=key)
            producer.send(settings.topic("alerts"), key=key.encode(), value=encode(event))
        producer.close()

        wait_until(lambda: slack.arrived, 60, "the first post", 0.05, context=stages.tails)
        channel, group = posted(*slack.arrived[0])
        line = f"(firing {group}) to {channel}: attempt 1"
        [victim] = [m for m in ("a", "b") if line in stages.log(f"notifier-{m}")]
        stages.procs[f"notifier-{victim}"].send_signal(signal.SIGKILL)
        stages.procs[f"notifier-{victim}"].wait(10)
        assert len(slack.received) < len(slack.arrived), "killed before the webhook answered"
        stages.env["FINSENT_INSTANCE_ID"] = victim
        stages.start(f"notifier-{victim}-2", "notifier")

        def done() -> bool:
            return sum(store.load_offsets("notifier").values()) == len(SERIES) and len(
                slack.received
            ) >= 2 * len(SERIES)

        wait_until(done, 90, "every alert committed and posted", context=stages.tails)
        got = Counter(posted(r.path, r.body) for r in slack.accepted)
        assert len(slack.received) == len(slack.accepted)  # no post failed
    want = Counter({(c, k): 1 for c in ("ops", "risk") for k in SERIES})
    assert got == want, f"missing {want - got}, twice {[k for k, n in got.items() if n > 1]}"
    rows = store.query(deliveries)
    assert Counter((r["channel"], r["group_key"]) for r in rows) == want
    # The killed send's claim stays: it counts as sent, so the restart skipped it.
    assert sorted(r["status"] for r in rows) == ["delivered"] * (2 * len(SERIES) - 1) + ["sending"]
    assert "not re-sending" in stages.log(f"notifier-{victim}-2")


def test_growing_alerts_moves_each_notification_group_to_its_new_partition() -> None:
    rows = {"0/ticker:AAA": {"g": 1}, "0/overall": {"g": 2}}
    new_partition = {"ticker:AAA": 0, "overall": 2}

    assert notifier_stage.repartition_state(rows, new_partition.__getitem__) == {
        "0/ticker:AAA": {"g": 1},
        "2/overall": {"g": 2},
    }
