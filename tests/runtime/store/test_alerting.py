from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.records import alert as make_alert

from finsent.core.records import Alert
from finsent.runtime.store import Commit, Store, alert_acks, alert_events, alerts, as_utc

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
W = timedelta(minutes=15)


def alert(state: str, window_index: int, neg_share: float) -> Alert:
    start = T0 + window_index * W
    return make_alert(
        key="overall",
        state=state,
        severity="critical",
        rule="r",
        window_start=start,
        window_end=start + W,
        neg_share=neg_share,
        started_at=T0,
        message=f"{state} message",
    )


def test_alert_row_keeps_firing_evidence_and_events_keep_history(store: Store) -> None:
    store.commit(Commit(stage="alerter", alerts=[alert("firing", 6, 0.8)]))
    store.commit(Commit(stage="alerter", alerts=[alert("resolved", 8, 0.1)]))
    [row] = store.query(alerts)
    assert row["state"] == "resolved"
    assert row["neg_share"] == 0.8 and as_utc(row["window_start"]) == T0 + 6 * W
    assert as_utc(row["updated_at"]) == T0 + 9 * W
    assert row["message"] == "resolved message"
    events = store.query(alert_events, order_by=[alert_events.c.at])
    assert [(e["state"], e["payload"]["neg_share"]) for e in events] == [
        ("firing", 0.8),
        ("resolved", 0.1),
    ]


def test_a_resolve_without_a_stored_firing_keeps_the_resolve(store: Store) -> None:
    store.commit(Commit(stage="alerter", alerts=[alert("resolved", 8, 0.1)]))
    [row] = store.query(alerts)
    assert (row["state"], row["neg_share"]) == ("resolved", 0.1)


def test_acknowledging_records_the_latest_on_the_alert_and_every_ack(store: Store) -> None:
    assert not store.acknowledge("a1", "ana", "no such alert yet", T0)
    store.commit(Commit(stage="alerter", alerts=[alert("firing", 1, 0.8)]))
    assert store.acked_ids({"a1"}) == set()
    assert store.acknowledge("a1", "ana", "looking", T0 + W)
    assert store.acknowledge("a1", "bo", "mine now", T0 + 2 * W)
    [row] = store.query(alerts)
    assert (row["acked_by"], row["ack_comment"]) == ("bo", "mine now")
    acks = store.query(alert_acks, order_by=[alert_acks.c.at])
    assert [(a["by"], a["comment"]) for a in acks] == [("ana", "looking"), ("bo", "mine now")]
    assert store.acked_ids({"a1", "unknown"}) == {"a1"}
    assert store.acked_ids(set()) == set()  # asks only about the alerts it is given


def test_active_silences_are_those_spanning_now(store: Store) -> None:
    for name, start, end in (("past", 0, 1), ("now", 1, 3), ("later", 3, 4)):
        store.add_silence(
            {
                "id": name,
                "matcher": "ticker:*",
                "severity": None,
                "starts_at": T0 + start * W,
                "ends_at": T0 + end * W,
                "created_by": "ana",
                "comment": "",
            }
        )
    assert [s["id"] for s in store.active_silences(T0 + 2 * W)] == ["now"]
    assert [s["id"] for s in store.active_silences(T0 + W)] == ["now"]  # ends are exclusive


def test_the_delivery_log_keeps_one_row_per_notification_and_channel(store: Store) -> None:
    row = {
        "notification_id": "n1",
        "channel": "slack",
        "status": "failed",
        "attempts": 1,
        "last_error": "timeout",
        "group_key": "overall",
        "kind": "firing",
        "at": T0,
    }
    assert store.delivery("n1", "slack") is None
    store.record_delivery(row)
    store.record_delivery({**row, "status": "delivered", "attempts": 2, "last_error": ""})
    logged = store.delivery("n1", "slack")
    assert logged is not None and (logged["status"], logged["attempts"]) == ("delivered", 2)
    assert store.delivery("n1", "email") is None


def test_latest_alerts_are_the_most_recently_updated_first_up_to_the_limit(store: Store) -> None:
    from dataclasses import replace

    for n, window_index in enumerate((3, 1, 5, 2)):
        fired = replace(alert("firing", window_index, 0.8), id=f"a{n}", key=f"ticker:T{n}")
        store.commit(Commit(stage="alerter", alerts=[fired]))

    latest = store.latest_alerts(limit=3)

    assert [row["id"] for row in latest] == ["a2", "a0", "a3"]  # windows 5, 3, 2
    assert store.latest_alerts(limit=10)[-1]["id"] == "a1"


def test_an_acknowledgement_outlives_later_and_replayed_events(store: Store) -> None:
    store.commit(Commit(stage="alerter", alerts=[alert("pending", 1, 0.7)]))
    assert store.acknowledge("a1", "ana", "on it", T0 + W)

    store.commit(Commit(stage="alerter", alerts=[alert("firing", 2, 0.8)]))  # pending → firing
    store.commit(Commit(stage="alerter", alerts=[alert("firing", 2, 0.8)]))  # a replayed batch

    [row] = store.query(alerts)
    assert (row["state"], row["neg_share"]) == ("firing", 0.8)
    assert (row["acked_by"], row["ack_comment"]) == ("ana", "on it")
    assert as_utc(row["acked_at"]) == T0 + W
    assert store.acked_ids(["a1", "a2"]) == {"a1"}
