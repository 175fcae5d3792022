"""The alerter's logic in process, driven by the test kit (no broker).

A timeline in event time: quiet windows build a series' baseline, a negative spike at ``t``
fires an alert with the window that ends at ``t`` + 15 min, and the first quiet window after
the spike resolves it. The detector judges one 15-minute scale here: these tests are about
the stage (state, partitions, redelivery, crashes); tests/alerts/test_detector.py is about the
detector. Windows it does not
watch never alert; windows the aggregator delivers again, and a batch replayed after a crash,
give no second history.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support.records import T0, WINDOW, window_stat
from support.stage_logic import DyingStore, ProcessKilled, alerter, isolated_settings

from finsent.alerts.alerter import repartition_state
from finsent.core.records import Alert, WindowStat, encode
from finsent.core.settings import Settings
from finsent.runtime.store import Commit, Store, alert_events, alerts, as_utc
from finsent.runtime.testing import CollectingSink, run_logic

NOW = T0 + timedelta(days=1)  # the wall clock; alerting decides on event time alone
SPIKE = 6  # the first spike window
SPIKE_AT = T0 + SPIKE * WINDOW  # t


def window(i: int, neg_share: float, key: str = "topic:Financials", **fields: object) -> WindowStat:
    """The i-th 15-minute window of ``key``: 20 stories, this share of them negative."""
    start = T0 + i * WINDOW
    return window_stat(key=key, window_start=start, count=20, neg_share=neg_share, **fields)


def timeline(spike_windows: int = 2, quiet_after: int = 3) -> list[WindowStat]:
    """Quiet windows (10 % negative), a spike (80 %) from window ``SPIKE``, quiet again."""
    shares = [0.1] * SPIKE + [0.8] * spike_windows + [0.1] * quiet_after
    return [window(i, share) for i, share in enumerate(shares)]


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "windows": ("15m",),
        "alert_keys": ("topic:*",),
        "alert_scales": ("15m",),
    }
    tmp_path.mkdir(parents=True, exist_ok=True)  # a store folder must exist (or be asked for)
    return isolated_settings(tmp_path, **{**values, **overrides})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.database_url)


def events(outputs: list[tuple[str, Alert]]) -> list[tuple[str, datetime, datetime]]:
    """Each alert event as (state, window start, the event time it was raised at)."""
    return [(a.state, a.window_start, a.updated_at) for _, a in outputs]


def test_a_spike_at_t_fires_with_the_window_ending_after_t_then_resolves(
    settings: Settings, store: Store
) -> None:
    run = run_logic(alerter(settings, store), timeline(), store, lambda: NOW, stage="alerter")

    resolved_at = SPIKE_AT + 2 * WINDOW  # the first quiet window after the two spike windows
    assert events(run.outputs) == [
        ("firing", SPIKE_AT, SPIKE_AT + WINDOW),  # t1 = t2: the spike window's own close
        ("resolved", resolved_at, resolved_at + WINDOW),
    ]
    (key, fired), (_, resolved) = run.outputs
    assert key == fired.key == "topic:Financials"  # keyed by its notification group
    assert fired.id == resolved.id and fired.started_at == resolved.started_at == SPIKE_AT
    assert fired.neg_share == 0.8 and fired.zscore >= 3.5 and fired.count == 20
    assert "(expected 2.00;" in fired.message  # the quiet windows' 2 negatives, not a prior's
    assert 0.1 <= fired.baseline_mean < 0.2  # the quiet windows' rate (with a small prior)
    stored = store.query(alert_events, order_by=[alert_events.c.at])
    assert [(e["state"], as_utc(e["at"])) for e in stored] == [
        ("firing", SPIKE_AT + WINDOW),
        ("resolved", resolved_at + WINDOW),
    ]
    [row] = store.query(alerts)
    assert (row["id"], row["state"]) == (fired.id, "resolved")


def test_events_are_keyed_by_notification_group_so_one_notifier_holds_a_group(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("grouping: {group_by: family}\n")
    settings = settings_for(tmp_path, alert_rules_file=rules)
    store = Store(settings.database_url)
    windows = timeline() + [replace(w, key="topic:Markets") for w in timeline()]

    run = run_logic(alerter(settings, store), windows, store, lambda: NOW, stage="alerter")

    assert {a.key for _, a in run.outputs} == {"topic:Financials", "topic:Markets"}
    assert {key for key, _ in run.outputs} == {"topic"}  # one family: one partition


@pytest.mark.parametrize("batch_size", [1, 64])
def test_an_alert_whose_series_goes_quiet_resolves_for_no_data(
    tmp_path: Path, batch_size: int
) -> None:
    settings = settings_for(tmp_path, alert_no_data_windows=3)
    store = Store(settings.database_url)
    # Financials spikes, then falls silent; Markets goes on, moving event time.
    spiking = [window(i, share) for i, share in enumerate([0.1] * SPIKE + [0.8])]
    going_on = [window(i, 0.1, key="topic:Markets") for i in range(SPIKE + 6)]
    by_time = sorted(spiking + going_on, key=lambda w: (w.window_end, w.key))

    run = run_logic(
        alerter(settings, store),
        by_time,
        store,
        lambda: NOW,
        stage="alerter",
        batch_size=batch_size,
    )

    quiet_from = SPIKE_AT + 3 * WINDOW  # the third window with no Financials data
    assert [(a.key, a.state, a.window_start, a.updated_at) for _, a in run.outputs] == [
        ("topic:Financials", "firing", SPIKE_AT, SPIKE_AT + WINDOW),
        ("topic:Financials", "resolved", quiet_from, quiet_from + WINDOW),
    ]
    resolved = run.outputs[1][1]
    assert resolved.id == run.outputs[0][1].id and "no data for 3 windows" in resolved.message


def test_a_restarted_alerter_still_resolves_a_firing_alert_for_no_data(tmp_path: Path) -> None:
    """The series with an active alert are known from the saved state, not only from what
    this process saw fire."""
    settings = settings_for(tmp_path, alert_no_data_windows=3)
    store = Store(settings.database_url)
    spiking = [window(i, share) for i, share in enumerate([0.1] * SPIKE + [0.8])]
    going_on = [window(i, 0.1, key="topic:Markets") for i in range(SPIKE + 6)]
    by_time = sorted(spiking + going_on, key=lambda w: (w.window_end, w.key))
    upto_spike = by_time.index(spiking[-1]) + 1

    before = run_logic(
        alerter(settings, store), by_time[:upto_spike], store, lambda: NOW, stage="alerter"
    )
    after = run_logic(alerter(settings, store), by_time, store, lambda: NOW, stage="alerter")

    assert [(a.key, a.state) for _, a in before.outputs] == [("topic:Financials", "firing")]
    quiet_from = SPIKE_AT + 3 * WINDOW
    assert [(a.key, a.state, a.window_start) for _, a in after.outputs] == [
        ("topic:Financials", "resolved", quiet_from)
    ]
    assert after.outputs[0][1].id == before.outputs[0][1].id


def test_a_member_resolves_for_no_data_only_the_series_of_its_own_partitions(
    tmp_path: Path,
) -> None:
    """Two alerters in one group: Financials comes through partition 0, Markets through 1.
    The member of partition 1 sees Markets move on while it never sees Financials: that
    series is not quiet, only another member's, and its firing alert must stay firing."""
    settings = settings_for(tmp_path, alert_no_data_windows=3)
    store = Store(settings.database_url)
    spiking = [window(i, share) for i, share in enumerate([0.1] * SPIKE + [0.8])]
    owner_of_financials = run_logic(
        alerter(settings, store), {0: spiking}, store, lambda: NOW, stage="alerter"
    )
    assert [a.state for _, a in owner_of_financials.outputs] == ["firing"]

    going_on = [window(i, 0.1, key="topic:Markets") for i in range(SPIKE + 6)]
    owner_of_markets = run_logic(
        alerter(settings, store), {1: going_on}, store, lambda: NOW, stage="alerter"
    )

    assert owner_of_markets.outputs == []


def test_state_saved_before_it_was_kept_per_partition_is_taken_up_and_moved(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    store = Store(settings.database_url)
    history = [window(i, 0.1) for i in range(SPIKE)]
    run_logic(alerter(settings, store), history, store, lambda: NOW, stage="alerter")
    # As an older finsent saved it: the series key alone.
    saved = store.load_state("alerter")
    store.commit(
        Commit(
            stage="alerter",
            state_put={k.split("/", 1)[1]: v for k, v in saved.items()},
            state_delete=set(saved),
        )
    )
    assert set(store.load_state("alerter")) == {"topic:Financials"}

    spike = [*history, window(SPIKE, 0.8)]  # the history again (already read), then a spike
    run = run_logic(alerter(settings, store), spike, store, lambda: NOW, stage="alerter")

    assert [a.state for _, a in run.outputs] == ["firing"]  # its baseline was kept
    assert set(store.load_state("alerter")) == {"0/topic:Financials"}


def test_quiet_series_and_windows_it_does_not_watch_never_alert(
    settings: Settings, store: Store
) -> None:
    spike = 0.9
    unwatched = [
        # A running update of an open window: alerting reads final windows only.
        window(SPIKE, spike, version=0, final=False),
        # Another window size, and a series outside alert_keys.
        window_stat(
            key="topic:Financials",
            window_start=SPIKE_AT,
            window_end=SPIKE_AT + timedelta(hours=1),
            count=80,
            neg_share=spike,
        ),
        *(window(i, spike if i >= SPIKE else 0.1, key="overall") for i in range(SPIKE + 2)),
        *(window(i, 0.1, key="topic:Earnings") for i in range(SPIKE + 2)),
    ]

    run = run_logic(alerter(settings, store), unwatched, store, lambda: NOW, stage="alerter")

    assert run.outputs == []
    assert store.count(alert_events) == 0
    assert run.offsets == {("sentiment.windows", 0): len(unwatched)}


def test_the_watchlists_series_are_watched_with_their_own_thresholds(tmp_path: Path) -> None:
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text("companies:\n  - {ticker: ACME, name: Acme Corp}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("series:\n  - {watchlist: true, fire_z: 50.0}\n")
    spiking = [replace(w, key="ticker:ACME") for w in timeline()]
    others = [replace(w, key="ticker:BETA") for w in timeline()]

    # alert_keys watches topics only: the watchlist's ticker is watched all the same.
    settings = settings_for(tmp_path, watchlist_file=watchlist)
    store = Store(settings.database_url)
    run = run_logic(alerter(settings, store), spiking + others, store, lambda: NOW, stage="alerter")
    assert [(a.key, a.state) for _, a in run.outputs] == [
        ("ticker:ACME", "firing"),
        ("ticker:ACME", "resolved"),
    ]

    # A rules file's `watchlist: true` thresholds apply to it (here: too high to fire).
    settings = settings_for(tmp_path / "strict", watchlist_file=watchlist, alert_rules_file=rules)
    store = Store(settings.database_url)
    run = run_logic(alerter(settings, store), spiking, store, lambda: NOW, stage="alerter")
    assert run.outputs == []


def test_windows_delivered_again_raise_no_second_event(settings: Settings, store: Store) -> None:
    windows = timeline()
    # The aggregator is at-least-once: a stretch of windows, spike included, comes twice.
    redelivered = [*windows[:9], *windows[4:9], *windows[9:]]

    run = run_logic(alerter(settings, store), redelivered, store, lambda: NOW, stage="alerter")

    assert [state for state, _, _ in events(run.outputs)] == ["firing", "resolved"]
    assert store.count(alert_events) == 2


def test_a_batch_replayed_after_a_crash_leaves_one_history(settings: Settings) -> None:
    windows = timeline()
    sink = CollectingSink()
    # Batches of three; the third (windows 6-8: the spike and the resolve) is sent, then the
    # process dies before committing it.
    dying = DyingStore(settings.database_url, dies_at=3)
    with pytest.raises(ProcessKilled):
        logic = alerter(settings, dying)
        run_logic(logic, windows, dying, lambda: NOW, stage="alerter", batch_size=3, sink=sink)
    sent_before = sink.records("alerts", Alert)
    store = Store(settings.database_url)

    restarted = run_logic(
        alerter(settings, store), windows, store, lambda: NOW, stage="alerter", batch_size=3
    )

    # At-least-once: the replayed batch sends its events again, identical, ids and all, so
    # the notifier's delivery log makes the second copy a no-op.
    assert [a for _, a in sent_before] == [a for _, a in restarted.outputs]
    assert [state for state, _, _ in events(restarted.outputs)] == ["firing", "resolved"]
    stored = store.query(alert_events, order_by=[alert_events.c.at])
    assert [e["state"] for e in stored] == ["firing", "resolved"]
    assert restarted.offsets == {("sentiment.windows", 0): len(windows)}


def test_a_window_claiming_a_huge_weighted_count_is_a_dead_letter_not_a_hang(
    settings: Settings, store: Store
) -> None:
    """A detector summing tails over a window's (novelty-weighted) stories would be kept busy
    for good by a hostile count of 10^12. The count is refused where the window is decoded."""
    windows = timeline()
    claimed = window(len(windows), 0.8, weighted_neg_share=0.8, weighted_count=20.0)
    hostile = encode(claimed).replace(b'"weighted_count":20.0', b'"weighted_count":1e12')
    assert hostile != encode(claimed)

    run = run_logic(
        alerter(settings, store), [*windows, hostile], store, lambda: T0, stage="alerter"
    )

    [letter] = run.dead
    assert "weighted_count" in letter.reason and letter.offset == len(windows)
    assert run.offsets == {("sentiment.windows", 0): len(windows) + 1}


def test_growing_sentiment_windows_moves_each_series_state_to_its_new_partition() -> None:
    rows = {"0/ticker:AAA": {"n": 1}, "1/overall": {"n": 2}, "ticker:OLD": {"n": 3}}
    new_partition = {"ticker:AAA": 2, "overall": 1}

    moved = repartition_state(rows, new_partition.__getitem__)

    # a row saved before state was kept per partition stays for its adopter
    assert moved == {"2/ticker:AAA": {"n": 1}, "1/overall": {"n": 2}, "ticker:OLD": {"n": 3}}
