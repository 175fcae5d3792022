"""Negative-spike detection. Pure: a function of the series state and the new window.

A series fires when a closed window's negative share stands out against the series' own recent
windows, has enough stories, and clears an absolute floor. The baseline rate p pools the recent
windows' stories (Laplace-smoothed). The window's surprise is the exact binomial chance of seeing
at least its k negatives among n stories at rate p, expressed as a z-score, so small windows are
judged fairly: 4 negatives of 5 is far less surprising than 40 of 50. It resolves when z falls
below a lower threshold (hysteresis). Windows during an alert stay out of the baseline.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from statistics import NormalDist
from typing import Any

from finsent.records import Alert, WindowStat, decode, to_jsonable

_NORMAL = NormalDist()


@dataclass(frozen=True)
class SpikeRule:
    name: str = "negative-share-spike"
    min_count: int = 5
    min_baseline: int = 4  # windows of history before the rule may fire
    baseline_windows: int = 24
    fire_z: float = 3.0
    resolve_z: float = 1.0
    floor: float = 0.4  # the negative share must also reach this


@dataclass(frozen=True)
class SeriesState:
    # (negative share, story count) of recent non-alerting windows
    history: tuple[tuple[float, int], ...] = ()
    last_window: datetime | None = None  # for dropping redelivered windows
    active: Alert | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "history": [list(h) for h in self.history],
            "last_window": self.last_window.isoformat() if self.last_window else None,
            "active": to_jsonable(self.active) if self.active else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesState:
        return cls(
            history=tuple((share, count) for share, count in data["history"]),
            last_window=datetime.fromisoformat(data["last_window"])
            if data["last_window"]
            else None,
            active=decode(Alert, json.dumps(data["active"])) if data["active"] else None,
        )


@dataclass(frozen=True)
class Evaluation:
    state: SeriesState
    event: Alert | None = None
    baseline_mean: float = 0.0
    baseline_std: float = 0.0
    zscore: float = 0.0
    notes: tuple[str, ...] = field(default=())


def baseline(history: tuple[tuple[float, int], ...], n: int) -> tuple[float, float]:
    """Pooled negative rate of the history, and the standard error of a share of ``n`` stories."""
    negatives = sum(share * count for share, count in history)
    total = sum(count for _, count in history)
    p = (negatives + 1) / (total + 2)
    return p, math.sqrt(p * (1 - p) / max(n, 1))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space so large n cannot overflow."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def surprise_z(negatives: int, n: int, p: float) -> float:
    """The binomial upper-tail probability of ``negatives`` as a standard-normal z-score."""
    tail = min(max(binomial_tail(negatives, n, p), 1e-300), 1 - 1e-12)
    return -_NORMAL.inv_cdf(tail)


def alert_id(rule: SpikeRule, key: str, started: datetime) -> str:
    return hashlib.sha256(f"{rule.name}|{key}|{started.isoformat()}".encode()).hexdigest()[:24]


def evaluate(rule: SpikeRule, state: SeriesState, window: WindowStat, now: datetime) -> Evaluation:
    """Next state and the alert event (firing or resolved), if any, for one closed window."""
    del now  # decisions use event time only, so replays match live runs; kept for the interface
    if state.last_window is not None and window.window_start <= state.last_window:
        return Evaluation(state=state, notes=("duplicate or out-of-order window ignored",))
    history = state.history
    mean, std = baseline(history, window.count)
    z = surprise_z(round(window.neg_share * window.count), window.count, mean)
    enough_history = len(history) >= rule.min_baseline
    event: Alert | None = None
    active = state.active

    if active is None:
        fires = (
            enough_history
            and window.count >= rule.min_count
            and window.neg_share >= rule.floor
            and z >= rule.fire_z
        )
        if fires:
            active = _alert(rule, window, mean, std, z, state="firing", started=window.window_start)
            event = active
        else:
            history = (*history, (window.neg_share, window.count))[-rule.baseline_windows :]
    elif z < rule.resolve_z or window.neg_share < rule.floor / 2:
        event = replace(
            _alert(rule, window, mean, std, z, state="resolved", started=active.started_at),
            severity=active.severity,
        )
        active = None
        history = (*history, (window.neg_share, window.count))[-rule.baseline_windows :]
    new_state = SeriesState(history=history, last_window=window.window_start, active=active)
    return Evaluation(state=new_state, event=event, baseline_mean=mean, baseline_std=std, zscore=z)


def _alert(
    rule: SpikeRule,
    window: WindowStat,
    mean: float,
    std: float,
    z: float,
    *,
    state: str,
    started: datetime,
) -> Alert:
    severity = "critical" if z >= 2 * rule.fire_z else "warning"
    verb = "spiked to" if state == "firing" else "back to"
    return Alert(
        id=alert_id(rule, window.key, started),
        key=window.key,
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        rule=rule.name,
        window_start=window.window_start,
        window_end=window.window_end,
        neg_share=window.neg_share,
        baseline_mean=round(mean, 6),
        baseline_std=round(std, 6),
        zscore=round(z, 4),
        count=window.count,
        headlines=window.top_headlines,
        started_at=started,
        updated_at=window.window_end,
        message=(
            f"{window.key}: negative share {verb} {window.neg_share:.0%} "
            f"(baseline {mean:.0%} ± {std:.0%}, z={z:.1f}, n={window.count})"
        ),
    )
