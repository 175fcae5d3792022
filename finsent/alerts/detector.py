"""Negative-surge detection. Pure: a function of the series state and the new window.

The alerter feeds each series' short tumbling windows (15 minutes by default) here, in event
time. Evidence accumulates continuously: at every window the detector asks, at several time
scales at once (1 h, 6 h and 24 h by default), whether the novelty-weighted negative stories of
the last scale are more than the series' own history makes plausible. An alert fires as soon as
one scale has enough evidence, not when a fixed bucket closes.

The series' baseline, per scale, is everything older than that scale:

- its rate of negative stories: a Gamma-Poisson estimate, with exponential forgetting (a half-life
  of two weeks), counted from when this alerter started watching, not from the series' first
  story: a company that was never in the news has shown a low rate, and two months of silence
  are evidence of it. The prior is broad (2 negatives per longest scale, a Gamma of shape 0.5,
  weighing a quarter of that scale), so a series' own history takes over within hours;
- its burstiness: news comes in clusters, so the count is judged against a negative binomial
  whose extra variance is measured from the series' own tumbling blocks of that scale (a busy
  topic with a daily news cycle needs a bigger jump than a quiet company);
- its negative share, for the guard below.

The tail probability of the count, corrected for the number of scales (Bonferroni), becomes a
z-score. A window fires when z reaches ``fire_z`` and the evidence is plainly a surge of bad
news about the series: at least ``min_count`` novelty-weighted negative stories (one story
syndicated 50 times is one story), ``min_ratio`` times what the baseline expects, mostly
negative (``floor``), and a negative share that stands out against the series' own
(``share_z``). The share guard is what keeps seasonality out: a weekday morning, an earnings
season or a busy news day raises the volume of a series' stories, bad ones included, but not the
share of them that is bad. The alert resolves once z falls below ``resolve_z``.

Everything is a function of event time and the windows' contents, so a replay matches the live
run; floats are rounded where they are stored.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from finsent.core.durations import EPOCH, format_duration
from finsent.core.records import Alert, Headline, WindowStat, decode, to_jsonable

_NORMAL = NormalDist()
_HOUR = 3600.0
EVIDENCE_KEPT = 5  # negative stories an alert can show
TOP_EVIDENCE = 3  # of which the alert carries the first


@dataclass(frozen=True)
class SpikeRule:
    name: str = "negative-surge"
    scales: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=6), timedelta(days=1))
    half_life: timedelta = timedelta(days=14)  # how fast the baseline forgets
    fire_z: float = 3.5  # after the correction for the number of scales
    resolve_z: float = 2.0
    critical_z: float | None = None  # None: fire_z + 2
    min_count: float = 2.0  # novelty-weighted negative stories the surge needs
    min_ratio: float = 3.0  # ... and this many times what the baseline expects
    floor: float = 0.5  # ... and at least this share of the scale's stories negative
    share_z: float = 1.64  # ... a share that stands out against the series' own (one-sided 5 %)
    # Before a series has history: this many negative stories per longest scale (2 a day by
    # default), trusted as little as a Gamma of shape ``prior_shape`` is, which weighs as much
    # as a quarter of that scale of watching. Tied to the scales, not to a day, so scales of
    # minutes (a fast feed, the soak) are not judged against a day-sized prior for hours.
    prior_negatives: float = 2.0
    prior_shape: float = 0.5
    prior_dispersion: float = 0.5  # 1 / negative-binomial shape, before blocks show their own
    prior_dispersion_blocks: float = 8.0  # its weight, in blocks of the scale
    prior_share: float = 0.4
    prior_share_stories: float = 5.0

    @property
    def longest(self) -> timedelta:
        return max(self.scales)


@dataclass(frozen=True)
class ScaleBaseline:
    """What a series did before the last ``scale``: decayed sums, and tumbling-block moments."""

    ref: float  # epoch seconds the sums are decayed to
    negatives: float = 0.0  # decayed novelty-weighted negative stories
    exposure: float = 0.0  # decayed hours watched
    stories: float = 0.0  # decayed novelty-weighted stories
    block: int = -1  # index of the open block (epoch-aligned, one scale long)
    block_negatives: float = 0.0
    mean: float = 0.0  # EWMA of the blocks' negative counts
    square: float = 0.0  # EWMA of their squares
    blocks: float = 0.0  # effective number of blocks behind the EWMAs

    def to_json(self) -> list[float]:
        return [
            self.ref,
            self.negatives,
            self.exposure,
            self.stories,
            self.block,
            self.block_negatives,
            self.mean,
            self.square,
            self.blocks,
        ]

    @classmethod
    def from_json(cls, data: list[float]) -> ScaleBaseline:
        ref, neg, exp, stories, block, block_neg, mean, square, blocks = data
        return cls(ref, neg, exp, stories, int(block), block_neg, mean, square, blocks)


# A short window of the series: (end in epoch seconds, stories, novelty-weighted stories,
# novelty-weighted negatives, negatives).
Bucket = tuple[float, int, float, float, int]


@dataclass(frozen=True)
class SeriesState:
    origin: float | None = None  # epoch seconds of its first window: its own sums start there
    recent: tuple[Bucket, ...] = ()  # the windows of the longest scale
    baselines: tuple[ScaleBaseline, ...] = ()  # one per scale of the rule
    evidence: tuple[tuple[float, Headline], ...] = ()  # (end of its window, negative story)
    last_window: datetime | None = None  # for dropping redelivered windows
    active: Alert | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "recent": [list(b) for b in self.recent],
            "baselines": [b.to_json() for b in self.baselines],
            "evidence": [[end, to_jsonable(h)] for end, h in self.evidence],
            "last_window": self.last_window.isoformat() if self.last_window else None,
            "active": to_jsonable(self.active) if self.active else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesState:
        if "recent" not in data:  # saved by the detector before the surge design: start afresh
            return cls()
        return cls(
            origin=data["origin"],
            recent=tuple(
                (float(e), int(c), float(w), float(n), int(neg))
                for e, c, w, n, neg in data["recent"]
            ),
            baselines=tuple(ScaleBaseline.from_json(b) for b in data["baselines"]),
            evidence=tuple(
                (float(end), decode(Headline, json.dumps(h))) for end, h in data["evidence"]
            ),
            last_window=datetime.fromisoformat(data["last_window"])
            if data["last_window"]
            else None,
            active=decode(Alert, json.dumps(data["active"])) if data["active"] else None,
        )


@dataclass(frozen=True)
class ScaleVerdict:
    """One scale's evidence at one window."""

    scale: timedelta
    negatives: float  # novelty-weighted, in the last ``scale``
    stories: float  # novelty-weighted
    count: int  # stories, plain
    plain_negatives: int
    expected: float  # negatives the baseline expects in that long
    share: float  # baseline negative share
    share_std: float
    zscore: float  # of the count's tail, corrected for the number of scales
    passes: bool  # the evidence guards hold
    blocked_by: tuple[str, ...] = ()  # the guards that do not hold, in the rule's words


@dataclass(frozen=True)
class Evaluation:
    state: SeriesState
    event: Alert | None = None
    verdict: ScaleVerdict | None = None  # the scale that decided
    notes: tuple[str, ...] = field(default=())
    verdicts: tuple[ScaleVerdict, ...] = ()  # every scale's, each with its z (``explain``)

    @property
    def zscore(self) -> float:
        return self.verdict.zscore if self.verdict else 0.0


def negative_binomial_tail(k: int, mean: float, inverse_shape: float) -> float:
    """P(X >= k) for X negative binomial with this mean and variance mean + mean² / shape,
    summed in log space so far tails keep their precision."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    shape = 1.0 / max(inverse_shape, 1e-9)
    q = mean / (mean + shape)  # the "success" probability of each extra count
    log_q, log_p = math.log(q), math.log1p(-q)
    base = shape * log_p - math.lgamma(shape)

    def log_pmf(i: int) -> float:
        return math.lgamma(i + shape) - math.lgamma(i + 1) + base + i * log_q

    spread = math.sqrt(mean + mean * mean / shape)
    if k <= mean:  # a large tail: one minus the terms below k
        logs = [log_pmf(i) for i in range(k)]
        top = max(logs)
        return max(0.0, 1.0 - math.exp(top) * sum(math.exp(v - top) for v in logs))
    logs = [log_pmf(i) for i in range(k, k + 60 + int(20 * spread))]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def tail_z(tail: float) -> float:
    """An upper-tail probability as a standard-normal z-score."""
    return -_NORMAL.inv_cdf(min(max(tail, 1e-300), 1 - 1e-12))


def alert_id(rule: SpikeRule, key: str, started: datetime) -> str:
    return hashlib.sha256(f"{rule.name}|{key}|{started.isoformat()}".encode()).hexdigest()[:24]


def _seconds(at: datetime) -> float:
    return (at - EPOCH).total_seconds()


def _block_alpha(scale: float, half_life: float) -> float:
    """The EWMA weight of one block of ``scale`` seconds, for a baseline of this half-life."""
    return 1.0 - 2.0 ** (-scale / half_life)


def _mean_life_hours(half_life: float) -> float:
    """Hours an exponentially decayed exposure saturates at (its time constant)."""
    return half_life / math.log(2) / _HOUR


def _mature(
    base: ScaleBaseline, buckets: tuple[Bucket, ...], until: float, scale: float, half_life: float
) -> ScaleBaseline:
    """Fold the buckets that ended after ``base.ref`` and by ``until`` into the baseline, then
    decay it to ``until``; empty blocks in between count as zeros."""
    ref, neg, exp, stories = base.ref, base.negatives, base.exposure, base.stories
    block, block_neg, mean, square, blocks = (
        base.block,
        base.block_negatives,
        base.mean,
        base.square,
        base.blocks,
    )
    alpha = _block_alpha(scale, half_life)
    tau_hours = _mean_life_hours(half_life)

    def close_blocks(up_to: int) -> None:
        nonlocal block, block_neg, mean, square, blocks
        if block < 0:
            block = up_to
            return
        if up_to <= block:
            return
        mean += alpha * (block_neg - mean)
        square += alpha * (block_neg * block_neg - square)
        blocks = blocks * (1 - alpha) + 1.0
        empty = up_to - block - 1  # blocks with no story at all
        if empty > 0:
            keep = (1 - alpha) ** empty
            mean, square = mean * keep, square * keep
            blocks = blocks * keep + (1 - keep) / alpha
        block, block_neg = up_to, 0.0

    def decay_to(at: float) -> None:
        nonlocal ref, neg, exp, stories
        if at <= ref:
            return
        keep = 2.0 ** (-(at - ref) / half_life)
        neg, stories = neg * keep, stories * keep
        exp = exp * keep + tau_hours * (1 - keep)
        ref = at

    for end, _count, weighted, weighted_neg, _plain_neg in buckets:
        if end <= base.ref or end > until:
            continue
        decay_to(end)
        close_blocks(int((end - 1) // scale))
        neg += weighted_neg
        stories += weighted
        block_neg += weighted_neg
    decay_to(until)
    close_blocks(int((until - 1) // scale))
    return ScaleBaseline(ref, neg, exp, stories, block, block_neg, mean, square, blocks)


def _with_quiet_history(
    base: ScaleBaseline,
    first: float,
    watched_from: float,
    until: float,
    half_life: float,
    scale: float,
) -> ScaleBaseline:
    """The baseline (everything up to ``until``) as if the series had been watched since
    ``watched_from``: the hours before its first window, in which it had no story, added to
    its exposure, and their blocks (all without a negative story) to its block statistics,
    each decayed to ``until`` as the rest is."""
    quiet_end = min(first, until)
    if watched_from >= quiet_end:
        return base
    quiet = _mean_life_hours(half_life) * (
        2.0 ** (-(until - quiet_end) / half_life) - 2.0 ** (-(until - watched_from) / half_life)
    )
    alpha = _block_alpha(scale, half_life)
    last_quiet = int((quiet_end - 1) // scale)
    quiet_blocks = last_quiet - int((watched_from - 1) // scale)
    own_blocks = max(int((until - 1) // scale) - last_quiet, 0)
    # Zeros before its own blocks add nothing to the EWMAs, only to the weight behind them.
    weight = (1 - alpha) ** own_blocks * (1 - (1 - alpha) ** quiet_blocks) / alpha
    return replace(base, exposure=base.exposure + quiet, blocks=base.blocks + weight)


def _verdict(
    rule: SpikeRule,
    base: ScaleBaseline,
    recent: tuple[Bucket, ...],
    now: float,
    scale: timedelta,
    force: bool,
) -> ScaleVerdict:
    since = now - scale.total_seconds()
    window = [b for b in recent if b[0] > since]
    count = sum(b[1] for b in window)
    stories = sum(b[2] for b in window)
    negatives = sum(b[3] for b in window)
    plain_negatives = sum(b[4] for b in window)
    hours = scale.total_seconds() / _HOUR
    longest_hours = rule.longest.total_seconds() / _HOUR
    prior_b = rule.prior_shape * longest_hours / rule.prior_negatives  # hours the prior counts as
    shape = rule.prior_shape + base.negatives
    expected = hours * shape / (prior_b + base.exposure)
    # Burstiness of its blocks beyond Poisson (1 / shape), pulled towards the prior while few.
    # The block EWMAs start at zero: divide by the weight they have gathered (bias correction).
    alpha = _block_alpha(scale.total_seconds(), rule.half_life.total_seconds())
    gathered = min(1.0, alpha * base.blocks)
    mean = base.mean / gathered if gathered > 0 else 0.0
    variance = max(base.square / gathered - mean * mean, 0.0) if gathered > 0 else 0.0
    seen = max(variance - mean, 0.0) / (mean * mean) if mean > 1e-9 else 0.0
    dispersion = (rule.prior_dispersion * rule.prior_dispersion_blocks + seen * base.blocks) / (
        rule.prior_dispersion_blocks + base.blocks
    )
    share = (base.negatives + rule.prior_share * rule.prior_share_stories) / (
        base.stories + rule.prior_share_stories
    )
    share_std = math.sqrt(share * (1 - share) / max(stories, 1e-9))
    observed = negatives / stories if stories > 0 else 0.0
    guards = (
        # A scale judges once its baseline has watched that long.
        (base.exposure >= hours, "baseline shorter than the scale"),
        (negatives >= rule.min_count, f"fewer than {rule.min_count:g} negatives"),
        (negatives >= rule.min_ratio * expected, f"under {rule.min_ratio:g}x the expected"),
        (observed >= rule.floor, f"negative share under {rule.floor:g}"),
        ((observed - share) / share_std >= rule.share_z, "share within the series' usual"),
    )
    blocked_by = tuple(name for holds, name in guards if not holds)
    passes = not blocked_by
    zscore = 0.0
    if passes or force:  # the tail is the costly part: only where it can matter
        tail = negative_binomial_tail(
            math.floor(negatives + 0.5), expected, 1.0 / shape + dispersion
        )
        zscore = tail_z(min(1.0, tail * len(rule.scales)))
    return ScaleVerdict(
        scale=scale,
        negatives=negatives,
        stories=stories,
        count=count,
        plain_negatives=plain_negatives,
        expected=expected,
        share=share,
        share_std=share_std,
        zscore=zscore,
        passes=passes,
        blocked_by=blocked_by,
    )


def _merge_evidence(
    kept: tuple[tuple[float, Headline], ...], window: WindowStat, end: float, since: float
) -> tuple[tuple[float, Headline], ...]:
    """The most novel negative stories of the longest scale (then the most negative)."""
    fresh = [(end, h) for h in window.evidence if h.sentiment == "negative"]
    alive = [(e, h) for e, h in (*kept, *fresh) if e > since]
    alive.sort(key=lambda item: (-item[1].novelty, item[1].score, -item[0], item[1].id))
    unique: list[tuple[float, Headline]] = []
    seen: set[str] = set()
    for item in alive:
        if item[1].id not in seen:
            seen.add(item[1].id)
            unique.append(item)
    return tuple(unique[:EVIDENCE_KEPT])


def evaluate(
    rule: SpikeRule,
    state: SeriesState,
    window: WindowStat,
    now: datetime,
    origin: datetime | None = None,
    explain: bool = False,
) -> Evaluation:
    """Next state and the alert event (firing or resolved), if any, for one short window.

    ``origin``: when the alerter started watching (its first window); a new series counts as
    watched, and quiet, since then. None: since this window. ``explain``: also compute every
    scale's z, where the guards would skip it, and return all verdicts (the decision is the
    same either way)."""
    del now  # decisions use event time only, so replays match live runs; kept for the interface
    if state.last_window is not None and window.window_start <= state.last_window:
        return Evaluation(state=state, notes=("duplicate or out-of-order window ignored",))
    end = _seconds(window.window_end)
    start = _seconds(window.window_start)
    if state.origin is None:
        state = replace(
            state, origin=start, baselines=tuple(ScaleBaseline(ref=start) for _ in rule.scales)
        )
    assert state.origin is not None
    # Quiet hours before its first window, since the alerter's watch began: added where they
    # are judged, not stored, so the state is a function of the series' own windows only.
    watched_from = min(_seconds(origin), state.origin) if origin is not None else state.origin
    weighted = window.weighted_count if window.weighted_neg_share is not None else window.count
    share = window.weighted_neg_share if window.weighted_neg_share is not None else window.neg_share
    bucket: Bucket = (
        end,
        window.count,
        float(weighted),
        float(weighted) * share,
        round(window.neg_share * window.count),
    )
    longest = rule.longest.total_seconds()
    recent = tuple(b for b in (*state.recent, bucket) if b[0] > end - longest)
    half_life = rule.half_life.total_seconds()
    baselines = tuple(
        _mature(
            base,
            (*state.recent, bucket),
            end - scale.total_seconds(),
            scale.total_seconds(),
            half_life,
        )
        for base, scale in zip(state.baselines, rule.scales, strict=True)
    )
    active = state.active
    verdicts = [
        _verdict(
            rule,
            _with_quiet_history(
                base,
                state.origin,
                watched_from,
                end - scale.total_seconds(),
                half_life,
                scale.total_seconds(),
            ),
            recent,
            end,
            scale,
            force=active is not None or explain,
        )
        for base, scale in zip(baselines, rule.scales, strict=True)
    ]
    evidence = _merge_evidence(state.evidence, window, end, end - longest)
    firing = [v for v in verdicts if v.passes and v.zscore >= rule.fire_z]
    event: Alert | None = None
    starts = active is None and bool(firing)
    # The most surprising scale decides (the shortest on a tie); a new alert, of those that fire.
    decided = max(
        firing if starts else verdicts, key=lambda v: (v.zscore, -v.scale.total_seconds())
    )
    if starts:
        active = event = _alert(rule, window, decided, evidence, "firing", window.window_start)
    elif active is not None and decided.zscore < rule.resolve_z:
        event = replace(
            _alert(rule, window, decided, evidence, "resolved", active.started_at),
            severity=active.severity,
            headlines=active.headlines,
        )
        active = None
    next_state = replace(
        state,
        recent=recent,
        baselines=baselines,
        evidence=evidence,
        last_window=window.window_start,
        active=active,
    )
    return Evaluation(
        state=next_state,
        event=event,
        verdict=decided,
        verdicts=tuple(verdicts) if explain else (),
    )


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
    start = state.last_window + windows * hop  # the last of the windows with no data
    if now_event < start + hop:
        return None
    event = replace(
        active,
        state="resolved",
        window_start=start,
        window_end=start + hop,
        updated_at=start + hop,
        message=f"{active.key}: no data for {windows} windows; resolved",
    )
    return Evaluation(state=replace(state, active=None), event=event)


def _alert(
    rule: SpikeRule,
    window: WindowStat,
    verdict: ScaleVerdict,
    evidence: tuple[tuple[float, Headline], ...],
    status: str,
    started: datetime,
) -> Alert:
    critical = rule.critical_z if rule.critical_z is not None else rule.fire_z + 2
    z = verdict.zscore
    severity = "critical" if z >= critical else "warning"
    since = _seconds(window.window_end) - verdict.scale.total_seconds()
    shown = tuple(h for end, h in evidence if end > since)[:TOP_EVIDENCE]
    observed = verdict.negatives / verdict.stories if verdict.stories > 0 else 0.0
    span = format_duration(verdict.scale)
    if status == "firing":
        text = (
            f"{verdict.negatives:.1f} negative stories in {span} "
            f"(expected {verdict.expected:.2f}; {observed:.0%} of its stories negative, "
            f"usually {verdict.share:.0%}; z={z:.1f})"
        )
    else:
        text = f"back to {verdict.negatives:.1f} negative stories in {span} (z={z:.1f})"
    return Alert(
        id=alert_id(rule, window.key, started),
        key=window.key,
        state=status,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        rule=rule.name,
        window_start=window.window_end - verdict.scale,
        window_end=window.window_end,
        neg_share=round(verdict.plain_negatives / verdict.count, 6) if verdict.count else 0.0,
        weighted_neg_share=round(observed, 6),
        baseline_mean=round(verdict.share, 6),
        baseline_std=round(verdict.share_std, 6),
        zscore=round(z, 4),
        count=verdict.count,
        weighted_count=round(verdict.stories, 6),
        mean_score=window.mean_score,
        baseline_score=None,
        headlines=shown,
        started_at=started,
        updated_at=window.window_end,
        message=f"{window.key}: {text}",
    )


@dataclass(frozen=True)
class UnivariateRule:
    """The surge test for a plain numeric series, counted in records (NAB's 5-minute rows)."""

    scales: tuple[int, ...] = (1, 12, 48)  # records averaged: the value, an hour, four hours
    half_life: int = 300  # records
    clip: float = 3.0  # deviations beyond this many standard deviations teach the baseline less
    min_history: int = 30  # records before anything is judged
    # The largest z of the last stretch (decaying with this half-life, in records), below which
    # a deviation is not news for this series; never less than ``min_record``.
    record_half_life: int = 3000
    min_record: float = 3.0
    quiet: int = 48  # records held below the alarm after an alarm


class UnivariateSurge:
    """The alerter's design on a univariate series, for NAB (``finsent evaluate-detector``):
    the trailing means of several scales, each against its own EWMA baseline, the most
    surprising scale after the scale correction, two-sided. Where the news detector knows its
    counts' distribution, a plain series does not, so each scale's z is also judged against the
    largest of its recent past (its record): 0.5 and above ties or beats it.

    One value at a time, in order; nothing reads a clock."""

    def __init__(self, probation: int, rule: UnivariateRule | None = None) -> None:
        self.rule = rule or UnivariateRule()
        self.probation = probation
        self.seen = 0
        self.last_alarm: int | None = None
        self._values: list[float] = []
        self._mean: list[float | None] = [None] * len(self.rule.scales)
        self._var = [0.0] * len(self.rule.scales)
        self._record = [0.0] * len(self.rule.scales)
        self._alpha = 1.0 - 2.0 ** (-1.0 / self.rule.half_life)
        self._record_keep = 2.0 ** (-1.0 / self.rule.record_half_life)
        self._bonferroni = tail_z(0.5 / len(self.rule.scales))  # z of a median draw, corrected

    def update(self, timestamp: datetime | None, value: float) -> float:
        """The anomaly score of this record, in [0, 1); 0.5 and above is an alarm."""
        del timestamp
        value = float(value)
        if not math.isfinite(value):
            return 0.0  # a gap in the feed is not evidence of anything
        rule = self.rule
        self._values.append(value)
        if len(self._values) > max(rule.scales):
            self._values.pop(0)
        surprise = 0.0
        for i, scale in enumerate(rule.scales):
            recent = self._values[-scale:]
            level = sum(recent) / len(recent)
            mean = self._mean[i]
            if mean is None:
                self._mean[i] = level
                continue
            spread = math.sqrt(self._var[i]) + 1e-9 + 1e-6 * abs(mean)
            deviation = (
                min(abs(level - mean) / spread, 1e6) if self.seen >= rule.min_history else 0.0
            )
            # Two-sided tail, corrected for the number of scales, back on the z scale.
            tail = math.erfc(deviation / math.sqrt(2)) * len(rule.scales)
            z = max(tail_z(min(tail, 1.0)), 0.0)
            surprise = max(surprise, z / max(self._record[i], rule.min_record))
            self._record[i] = max(z, self._record[i] * self._record_keep)
            delta = level - mean
            if self.seen >= rule.min_history:
                limit = rule.clip * spread
                delta = max(-limit, min(limit, delta))
            self._mean[i] = mean + self._alpha * delta
            self._var[i] = (1 - self._alpha) * (self._var[i] + self._alpha * delta * delta)
        index = self.seen
        self.seen += 1
        if index < self.probation:
            return 0.0
        score = surprise / (1.0 + surprise)
        if self.last_alarm is not None and index - self.last_alarm <= rule.quiet:
            return min(score, 0.5 - 1e-6)
        if score >= 0.5:
            self.last_alarm = index
        return score
