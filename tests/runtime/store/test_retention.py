"""Retention: what ended before the cut-off goes, table by table; open alerts stay."""

from __future__ import annotations

from datetime import timedelta

from support.records import T0, alert, scored_item, window_stat

from finsent.runtime.store import (
    Commit,
    Store,
    alert_acks,
    alert_events,
    alerts,
    deliveries,
    scored_items,
    silences,
    windows,
)

DAY = timedelta(days=1)
CUT = T0 + 10 * DAY


def delivery(notification_id: str, at: object) -> dict[str, object]:
    return {
        "notification_id": notification_id,
        "channel": "ops",
        "status": "delivered",
        "attempts": 1,
        "last_error": "",
        "group_key": "topic",
        "kind": "firing",
        "at": at,
    }


def silence(silence_id: str, ends_at: object) -> dict[str, object]:
    return {
        "id": silence_id,
        "matcher": "ticker:*",
        "severity": None,
        "starts_at": T0,
        "ends_at": ends_at,
        "created_by": "ops",
        "comment": "",
    }


def test_prune_forgets_what_ended_before_the_cut_off_and_keeps_open_alerts(store: Store) -> None:
    old, new = T0, CUT + DAY
    store.commit(
        Commit(
            stage="router",
            scored=[
                scored_item(id="old", published_at=old),
                scored_item(id="new", published_at=new),
            ],
            windows=[window_stat(window_start=old), window_stat(window_start=new)],
            alerts=[
                alert(id="done", state="resolved", updated_at=old),
                alert(id="open", state="firing", updated_at=old),  # still firing: kept
                alert(id="recent", state="resolved", window_start=new),
            ],
        )
    )
    store.acknowledge("done", "ana", "seen", old)
    store.acknowledge("open", "ana", "on it", old)
    for row in (delivery("n-old", old), delivery("n-new", new)):
        store.record_delivery(row)
    for row in (silence("ended", old + DAY), silence("running", new)):
        store.add_silence(row)

    pruned = store.prune(CUT)

    assert [r["id"] for r in store.query(scored_items)] == ["new"]
    assert len(store.query(windows)) == 1
    assert sorted(r["id"] for r in store.query(alerts)) == ["open", "recent"]
    assert [r["alert_id"] for r in store.query(alert_acks)] == ["open"]
    assert {r["alert_id"] for r in store.query(alert_events)} == {"recent"}
    assert [r["notification_id"] for r in store.query(deliveries)] == ["n-new"]
    assert [r["id"] for r in store.query(silences)] == ["running"]
    assert pruned["alerts"] == 1 and pruned["scored_items"] == 1 and pruned["silences"] == 1
    assert all(n == 0 for n in store.prune(CUT).values())  # nothing left to forget
