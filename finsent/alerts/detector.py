"""Negative-spike detection. Pure: a function of the series state and the new window.

Each series keeps its own baseline from earlier windows: an EWMA mean and variance of its
novelty-weighted negative share, and an EWMA of its mean score. A closed window is surprising
when its share stands out against both:

- the binomial surprise of its negatives among its (novelty-weighted) stories at the baseline
  rate, as a z-score, so small windows are judged fairly (4 of 5 is weaker evidence than 40
  of 50); and
- the EWMA z-score (x − mean) / sqrt(variance + sampling variance), so naturally jumpy series
  need a bigger jump.

With ``volume_z`` set, a window is also surprising when its count of negative stories
surges: the Poisson upper tail of its (novelty-weighted) negatives against the series' own
expected negatives per window (the EWMA volume times the EWMA share), as a z-score. That
catches the crisis of a series whose news is negative most days anyway, such as bank news,
where the share barely moves but the volume of bad news multiplies.

A window fires only if it is surprising on both (the smaller z counts), has enough
novelty-weighted volume (one story syndicated 50 times is one story, not 50), and clears an
absolute floor. With ``pending_windows`` > 1 the condition must hold that many windows in a
row: the first ones make the alert pending. It resolves when z falls below a lower threshold
(hysteresis). Windows during an alert stay out of the baseline.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from finsent.core.records import Alert, WindowStat, decode, to_jsonable

_NORMAL = NormalDist()


@dataclass(frozen=True)
class SpikeRule:
    name: str = "negative-share-spike"
    min_count: float = 5.0  # novelty-weighted stories the window needs
    min_baseline: int = 4  # windows of history before the rule may fire
    baseline_windows: int = 24  # EWMA span: alpha = 2 / (span + 1)
    fire_z: float = 3.0
    resolve_z: float = 1.0
    floor: float = 0.4  # the negative share must also reach this
    pending_windows: int = 1  # consecutive surprising windows before it fires
    critical_z: float | None = None  # None: twice fire_z
    volume_z: float | None = None  # None: off; else the negative-volume surge that also fires


@dataclass(frozen=True)
class SeriesState:
    windows: int = 0  # windows in the baseline so far
    mean: float = 0.0  # EWMA of the negative share
    var: float = 0.0  # EWMA variance of the negative share
    score: float = 0.0  # EWMA of the mean score
    volume: float = 0.0  # EWMA of the (novelty-weighted) stories per window
    last_window: datetime | None = None  # for dropping redelivered windows
    active: Alert | None = None  # pending or firing
    streak: int = 0  # consecutive windows meeting the fire condition

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "mean": self.mean,
            "var": self.var,
            "score": self.score,
            "volume": self.volume,
            "last_window": self.last_window.isoformat() if self.last_window else None,
            "active": to_jsonable(self.active) if self.active else None,
            "streak": self.streak,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesState:
        return cls(
            windows=data["windows"],
            mean=data["mean"],
            var=data["var"],
            score=data["score"],
            volume=data.get("volume", 0.0),
            last_window=datetime.fromisoformat(data["last_window"])
            if data["last_window"]
            else None,
            active=decode(Alert, json.dumps(data["active"])) if data["active"] else None,
            streak=data.get("streak", 0),
        )

    def learn(self, share: float, score: float, n: int, span: int) -> SeriesState:
        """Fold a non-alerting window into the baseline."""
        if self.windows == 0:
            return replace(self, windows=1, mean=share, var=0.0, score=score, volume=float(n))
        alpha = 2.0 / (span + 1)
        # Early on, weigh windows equally (a running mean) rather than trusting the first one.
        alpha = max(alpha, 1.0 / (self.windows + 1))
        delta = share - self.mean
        mean = self.mean + alpha * delta
        var = (1 - alpha) * (self.var + alpha * delta * delta)
        return replace(
            self,
            windows=self.windows + 1,
            mean=mean,
            var=var,
            score=self.score + alpha * (score - self.score),
            volume=self.volume + alpha * (n - self.volume),
        )


def share_baselines(
    shares: Sequence[float], span: int, learn: Sequence[bool] | None = None
) -> list[SeriesState]:
    """The baseline each window of a negative-share series is judged against: the state
    before it, folding in only the windows marked in ``learn`` (default: all), as ``evaluate``
    keeps the windows of an alert out. Only the share's mean and variance are meaningful here:
    the windows' scores and volumes are not given, so they stay zero."""
    if learn is not None and len(learn) != len(shares):
        raise ValueError("learn needs one flag per share")
    state = SeriesState()
    before: list[SeriesState] = []
    for i, share in enumerate(shares):
        before.append(state)
        if learn is None or learn[i]:
            state = state.learn(float(share), 0.0, 0, span)
    return before


@dataclass(frozen=True)
class Evaluation:
    state: SeriesState
    event: Alert | None = None
    baseline_mean: float = 0.0
    baseline_std: float = 0.0
    zscore: float = 0.0
    notes: tuple[str, ...] = field(default=())


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


def window_evidence(window: WindowStat) -> tuple[float, int, int]:
    """(negative share, negatives, stories), novelty-weighted where the window carries it."""
    if window.weighted_neg_share is not None and window.weighted_count > 0:
        n = max(1, round(window.weighted_count))
        return window.weighted_neg_share, round(window.weighted_neg_share * n), n
    return window.neg_share, round(window.neg_share * window.count), window.count


def zscores(state: SeriesState, share: float, negatives: int, n: int) -> tuple[float, float, float]:
    """(z, baseline rate, baseline std): the smaller of the binomial and the EWMA z-scores."""
    # The baseline rate as if from the stories behind it, with a Laplace prior, so a spotless
    # history does not make any negative infinitely rare.
    stories = state.volume * state.windows
    p = (state.mean * stories + 1) / (stories + 2)
    binomial = surprise_z(negatives, n, p)
    std = math.sqrt(state.var + p * (1 - p) / max(n, 1))
    ewma = (share - p) / std if std > 0 else 0.0
    return min(binomial, ewma), p, std


def poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), in log space so far tails keep their precision."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0

    def log_pmf(i: int) -> float:
        return i * math.log(lam) - lam - math.lgamma(i + 1)

    if k <= lam:  # a large tail: one minus the few terms below k
        logs = [log_pmf(i) for i in range(k)]
        top = max(logs)
        return max(0.0, 1.0 - math.exp(top) * sum(math.exp(v - top) for v in logs))
    # Past the mean the terms fall at least geometrically: sum them until they vanish.
    logs = [log_pmf(i) for i in range(k, k + 60 + int(10 * math.sqrt(lam)))]
    top = logs[0]
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def volume_surprise(state: SeriesState, negatives: int) -> float:
    """How surprising this many negative stories are for the series, as a z-score.

    The expectation has a floor of one story, so a series that is usually silent does not
    turn its first handful of stories into a surge."""
    expected = max(state.volume * state.mean, 1.0)
    tail = min(max(poisson_tail(negatives, expected), 1e-300), 1 - 1e-12)
    return -_NORMAL.inv_cdf(tail)


def alert_id(rule: SpikeRule, key: str, started: datetime) -> str:
    return hashlib.sha256(f"{rule.name}|{key}|{started.isoformat()}".encode()).hexdigest()[:24]


def evaluate(rule: SpikeRule, state: SeriesState, window: WindowStat, now: datetime) -> Evaluation:
    """Next state and the alert event (pending, firing or resolved), if any, for one window."""
    del now  # decisions use event time only, so replays match live runs; kept for the interface
    if state.last_window is not None and window.window_start <= state.last_window:
        return Evaluation(state=state, notes=("duplicate or out-of-order window ignored",))
    share, negatives, n = window_evidence(window)
    z, mean, std = zscores(state, share, negatives, n)
    if rule.volume_z is not None:
        # On the fire threshold's scale, so severity and resolution read one z either way.
        z = max(z, volume_surprise(state, negatives) * rule.fire_z / rule.volume_z)
    meets = (
        state.windows >= rule.min_baseline
        and (window.weighted_count if window.weighted_neg_share is not None else window.count)
        >= rule.min_count
        and share >= rule.floor
        and z >= rule.fire_z
    )
    active = state.active
    event: Alert | None = None
    learn = False
    streak = state.streak + 1 if meets else 0

    def make(status: str, started: datetime) -> Alert:
        return _alert(rule, window, state, share, mean, std, z, status=status, started=started)

    if active is None or active.state == "pending":
        if meets and streak >= rule.pending_windows:
            started = active.started_at if active else window.window_start
            active = event = make("firing", started)
        elif meets:  # not yet for long enough
            active = make("pending", active.started_at if active else window.window_start)
            event = active if state.active is None else None
        else:
            if active is not None:  # a pending alert that did not last: it ends quietly
                event = replace(make("resolved", active.started_at), severity=active.severity)
            active = None
            learn = True
    elif z < rule.resolve_z or share < rule.floor / 2:
        event = replace(make("resolved", active.started_at), severity=active.severity)
        active = None
        learn = True
    next_state = replace(state, last_window=window.window_start, active=active, streak=streak)
    if learn:
        next_state = next_state.learn(share, window.mean_score, n, rule.baseline_windows)
    return Evaluation(state=next_state, event=event, baseline_mean=mean, baseline_std=std, zscore=z)


def resolve_without_data(
    state: SeriesState, hop: timedelta, windows: int, now_event: datetime
) -> Evaluation | None:
    """The resolution of a series' active alert once ``windows`` windows (each ``hop`` apart)
    have closed past its last window with no window of its own, judged at ``now_event`` (the
    end of the newest window seen on any series). A quiet series cannot say it recovered, and
    without this its alert would fire, and repeat, forever. Event time only, like ``evaluate``.
    """
    active = state.active
    if active is None or state.last_window is None or windows <= 0:
        return None
    size = active.window_end - active.window_start
    start = state.last_window + windows * hop  # the last of the windows with no data
    if now_event < start + size:
        return None
    event = replace(
        active,
        state="resolved",
        window_start=start,
        window_end=start + size,
        updated_at=start + size,
        message=f"{active.key}: no data for {windows} windows; resolved",
    )
    return Evaluation(state=replace(state, active=None, streak=0), event=event)


def _alert(
    rule: SpikeRule,
    window: WindowStat,
    state: SeriesState,
    share: float,
    mean: float,
    std: float,
    z: float,
    *,
    status: str,
    started: datetime,
) -> Alert:
    critical = rule.critical_z if rule.critical_z is not None else 2 * rule.fire_z
    severity = "critical" if z >= critical else "warning"
    verb = {"firing": "spiked to", "pending": "rising to", "resolved": "back to"}[status]
    return Alert(
        id=alert_id(rule, window.key, started),
        key=window.key,
        state=status,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        rule=rule.name,
        window_start=window.window_start,
        window_end=window.window_end,
        neg_share=window.neg_share,
        weighted_neg_share=share,
        baseline_mean=round(mean, 6),
        baseline_std=round(std, 6),
        zscore=round(z, 4),
        count=window.count,
        weighted_count=window.weighted_count,
        mean_score=window.mean_score,
        baseline_score=round(state.score, 6),
        headlines=window.top_headlines,
        started_at=started,
        updated_at=window.window_end,
        message=(
            f"{window.key}: negative share {verb} {share:.0%} "
            f"(baseline {mean:.0%} ± {std:.0%}, z={z:.1f}, n={window.count})"
        ),
    )
