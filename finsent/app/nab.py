"""Score a streaming anomaly detector on the Numenta Anomaly Benchmark (NAB).

The scorer is written from the NAB papers (Lavin & Ahmad 2015; Ahmad et al. 2017) and its
README, not copied from NAB's code:

* Each labelled anomaly is a window of rows. A detection inside a window earns the profile's TP
  weight times a scaled sigmoid of its position: ``sigma(y) = 2 / (1 + e^(5y)) - 1`` with
  ``y = -(right - i + 1) / width``, so the window's left edge earns the full weight and the right
  edge almost nothing. Only a window's first (earliest, hence best) detection counts.
* A detection outside every window is a false positive costing the FP weight times
  ``sigma(distance past the preceding window / (its width - 1))``: right after a window it costs
  almost nothing (the alarm was only late), far away it costs the full weight; one before the
  first window costs the full weight.
* A window without detection costs the FN weight. True negatives are not scored.
* The first 15% of each file (at most 750 rows) is the probationary period: nothing there counts.
* The raw score is summed over all files, then normalized per profile:
  ``100 * (raw - null) / (perfect - null)``, where the null detector makes no detections and the
  perfect detector fires once at each window's left edge (earning TP weight × windows).
* One detection threshold per profile is chosen for the whole corpus, by an exact sweep over the
  detector's scores, the way NAB's optimizer does.

Windows come from ``labels/combined_windows.json``, cost weights from ``config/profiles.json``;
only the series whose CSV is present are scored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # NAB caps the probationary period at 15% of 5,000 rows

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

# Window numbers for rows outside every window, and for rows that do not count at all.
OUTSIDE = -1
PROBATION = -2


class StreamingDetector(Protocol):
    """One value at a time, in timestamp order; returns an anomaly score in [0, 1]."""

    def update(self, timestamp: datetime | None, value: float) -> float: ...


# Built with the row count of the probationary period, which NAB gives every detector.
DetectorFactory = Callable[[int], StreamingDetector]


@dataclass(frozen=True)
class CostMatrix:
    tp: float
    fp: float
    fn: float
    tn: float = 1.0


@dataclass(frozen=True)
class Published:
    """A row of NAB's scoreboard (NAB v1.0 README), scored on all 58 series."""

    detector: str
    standard: float
    low_fp: float
    low_fn: float


# Context only: these are NAB's published results on the full 58-file corpus, while we score
# the series present locally (24 real series), so they are not a like-for-like comparison.
PUBLISHED: tuple[Published, ...] = (
    Published("Perfect", 100.0, 100.0, 100.0),
    Published("Numenta HTM", 70.5, 62.6, 75.2),
    Published("CAD OSE", 69.9, 67.0, 73.2),
    Published("KNN CAD", 58.0, 43.4, 64.8),
    Published("Relative Entropy", 54.6, 47.6, 58.8),
    Published("Random Cut Forest", 51.7, 38.4, 59.7),
    Published("Twitter ADVec v1.0.0", 47.1, 33.6, 53.5),
    Published("Windowed Gaussian", 39.6, 20.9, 47.4),
    Published("Etsy Skyline", 35.7, 27.1, 44.5),
    Published("Bayesian Changepoint", 17.7, 3.2, 32.2),
    Published("EXPoSE", 16.4, 3.2, 26.9),
    Published("Random", 11.0, 1.2, 19.5),
    Published("Null", 0.0, 0.0, 0.0),
)


def probation_length(rows: int) -> int:
    """Rows at the start of a file in which no detection counts."""
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_CAP)


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's scoring curve: +1 well before a window's end, 0 at it, -1 far after it."""
    y = np.asarray(position, dtype=float)
    # Clipping only avoids overflow warnings; beyond 3 widths NAB says "-1" anyway.
    value = 2.0 / (1.0 + np.exp(np.clip(5.0 * y, -50.0, 50.0))) - 1.0
    return np.where(y > 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(-1.0))  # the left edge; TP credit is scaled so it earns 1


@dataclass(frozen=True)
class PointLabels:
    """Per-row scoring for one file under one profile."""

    weights: np.ndarray  # credit (> 0) or cost (< 0) if a detection falls on this row
    window: np.ndarray  # window number, OUTSIDE, or PROBATION
    windows: int  # windows that can be scored (not wholly inside the probationary period)
    labelled: int  # all windows of the file, which number them


def label_points(
    rows: int, windows: Sequence[tuple[int, int]], probation: int, cost: CostMatrix
) -> PointLabels:
    """What a detection on each row would earn; ``windows`` are inclusive row ranges, in order."""
    weights = np.full(rows, -cost.fp, dtype=float)  # before any window: a full false positive
    window = np.full(rows, OUTSIDE, dtype=np.int64)
    index = np.arange(rows)
    for number, (left, right) in enumerate(windows):
        width = right - left + 1
        inside = index[left : right + 1]
        weights[left : right + 1] = (
            cost.tp * scaled_sigmoid(-(right - inside + 1) / width) / _MAX_TP
        )
        window[left : right + 1] = number
        # Until the next window starts, a detection is judged by how late it is for this one.
        stop = windows[number + 1][0] if number + 1 < len(windows) else rows
        after = index[right + 1 : stop]
        weights[right + 1 : stop] = cost.fp * scaled_sigmoid((after - right) / max(width - 1, 1))
    window[:probation] = PROBATION
    scored = len(np.unique(window[window >= 0]))
    return PointLabels(weights=weights, window=window, windows=scored, labelled=len(windows))


def raw_score(detections: np.ndarray, labels: PointLabels, cost: CostMatrix) -> float:
    """NAB's raw score of one file for a boolean detection per row."""
    hits = np.asarray(detections, dtype=bool) & (labels.window != PROBATION)
    false_positives = float(labels.weights[hits & (labels.window == OUTSIDE)].sum())
    credit = 0.0
    for number in np.unique(labels.window[labels.window >= 0]):
        in_window = np.flatnonzero(hits & (labels.window == number))
        # The earliest detection scores best; later ones in the same window add nothing.
        credit += labels.weights[in_window[0]] if in_window.size else -cost.fn
    return false_positives + credit


def best_threshold(
    scores: Sequence[np.ndarray], labels: Sequence[PointLabels], cost: CostMatrix
) -> tuple[float, float]:
    """The threshold maximizing the corpus raw score, and that score (detection: score >= t).

    An exact sweep: sort every row of every file by score, descending, and lower the threshold
    one distinct score at a time. Each row adds its FP cost, or lifts its window's credit to the
    best detection seen so far in it.
    """
    all_scores = np.concatenate([np.asarray(s, dtype=float) for s in scores])
    weights = np.concatenate([lab.weights for lab in labels])
    offsets = np.cumsum([0] + [lab.labelled for lab in labels][:-1])
    window = np.concatenate(
        [
            np.where(lab.window >= 0, lab.window + offset, lab.window)
            for lab, offset in zip(labels, offsets, strict=True)
        ]
    )
    null = -cost.fn * sum(lab.windows for lab in labels)
    order = np.argsort(-all_scores, kind="stable")
    sorted_scores = all_scores[order]
    step = np.where(window[order] == OUTSIDE, weights[order], 0.0)
    in_window = np.flatnonzero(window[order] >= 0)
    # Within each window, the gain of a row is how far it raises the running best credit.
    for number in np.unique(window[order][in_window]):
        rows = in_window[window[order][in_window] == number]
        best = np.maximum.accumulate(np.concatenate(([-cost.fn], weights[order][rows])))
        step[rows] = np.diff(best)
    totals = null + np.cumsum(step)
    # A threshold admits every row with an equal score, so only the last row of a tie counts.
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    candidates = np.flatnonzero(last_of_tie)
    if candidates.size == 0:
        return math.inf, null
    best_at = candidates[np.argmax(totals[candidates])]
    if totals[best_at] <= null:
        return math.inf, null  # no threshold beats staying silent
    return float(sorted_scores[best_at]), float(totals[best_at])


@dataclass(frozen=True)
class Series:
    """One NAB data file with its windows as inclusive row ranges."""

    name: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        return probation_length(len(self.values))


def load_profiles(nab_dir: Path) -> dict[str, CostMatrix]:
    raw = json.loads((nab_dir / "config" / "profiles.json").read_text(encoding="utf-8"))
    return {
        name: CostMatrix(
            tp=raw[name]["CostMatrix"]["tpWeight"],
            fp=raw[name]["CostMatrix"]["fpWeight"],
            fn=raw[name]["CostMatrix"]["fnWeight"],
            tn=raw[name]["CostMatrix"]["tnWeight"],
        )
        for name in PROFILE_NAMES
    }


def load_series(nab_dir: Path) -> list[Series]:
    """Every labelled series whose CSV is present, in label-file order."""
    labels = json.loads((nab_dir / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    found = []
    for name, windows in labels.items():
        path = nab_dir / "data" / name
        if not path.is_file():
            continue  # the label file covers all 58 series; only some may be present
        frame = pd.read_csv(path)
        stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
        rows = [(_row_of(stamps, start), _row_of(stamps, end)) for start, end in windows]
        found.append(
            Series(
                name=name,
                timestamps=stamps,
                values=frame["value"].to_numpy(dtype=float),
                windows=tuple(sorted(rows)),
            )
        )
    return found


def _row_of(stamps: pd.DatetimeIndex, when: str) -> int:
    """The first row stamped ``when``, as NAB finds window edges (a few files repeat stamps
    or step back an hour at a daylight-saving change, so the stamps are not sorted)."""
    matches = np.flatnonzero(stamps == pd.Timestamp(when))
    if matches.size:
        return int(matches[0])
    # Edges between rows: the nearest row inside, were the stamps in order.
    return int(stamps.searchsorted(pd.Timestamp(when)))


def run_detector(series: Series, factory: DetectorFactory) -> np.ndarray:
    detector = factory(series.probation)
    update = detector.update
    return np.fromiter(
        (update(t, v) for t, v in zip(series.timestamps, series.values, strict=True)),
        dtype=float,
        count=len(series.values),
    )


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    detected: int  # windows with a detection
    windows: int
    false_positives: int

    @property
    def score(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else 0.0


@dataclass(frozen=True)
class NabReport:
    detector: str
    files: tuple[str, ...]
    windows: int
    rows: int
    seconds: float
    profiles: dict[str, ProfileResult] = field(default_factory=dict)
    # Reference detectors scored here, on the same series: name -> profile -> result.
    references: dict[str, dict[str, ProfileResult]] = field(default_factory=dict)

    def render(self) -> str:
        files = len(self.files)
        lines = [
            f"NAB evaluation: {files} series, {self.rows:,} rows, {self.windows} anomaly "
            f"windows ({self.seconds:.1f} s)",
            "",
            f"{self.detector}, one threshold per profile over all {files} series:",
            f"  {'profile':<20} {'score':>6} {'threshold':>10} {'windows hit':>12} {'FPs':>5}",
        ]
        for result in self.profiles.values():
            hit = f"{result.detected} / {result.windows}"
            lines.append(
                f"  {result.profile:<20} {result.score:>6.1f} {result.threshold:>10.4f} "
                f"{hit:>12} {result.false_positives:>5}"
            )
        header = f"  {'detector':<28} {'standard':>9} {'low FP':>8} {'low FN':>8}"
        lines += ["", f"Scored here, on the same {files} series:", header]
        for name, results in {self.detector: self.profiles, **self.references}.items():
            lines.append(f"  {name:<28}" + "".join(_cells(results)))
        lines += [
            "",
            "NAB's published scoreboard (NAB v1.0 README), on all 58 series. Context only, not a",
            f"like-for-like comparison: the {files} series here are a subset of the corpus, and a",
            "detector's score on a subset can differ from its full-corpus score either way.",
            header,
        ]
        for row in PUBLISHED:
            lines.append(
                f"  {row.detector:<28} {row.standard:>9.1f} {row.low_fp:>8.1f} {row.low_fn:>8.1f}"
            )
        return "\n".join(lines)


def _cells(results: dict[str, ProfileResult]) -> list[str]:
    widths = (10, 9, 9)
    return [
        f"{results[name].score:>{width}.1f}" if name in results else f"{'-':>{width}}"
        for name, width in zip(PROFILE_NAMES, widths, strict=True)
    ]


class WindowedGaussian:
    """A local stand-in for NAB's "windowed Gaussian" baseline, for a like-for-like floor.

    Each value's two-sided Gaussian tail against the mean and standard deviation of a long
    trailing window (refreshed every ``step`` records), as in NAB's reference detector.
    """

    def __init__(self, probation: int, window: int = 6400, step: int = 100) -> None:
        del probation  # NAB's version learns from the start too
        self.window = window
        self.step = step
        self._values: list[float] = []
        self._pending: list[float] = []
        self._sum = 0.0
        self._squares = 0.0
        self._mean = 0.0
        self._std = 1.0

    def update(self, timestamp: datetime | None, value: float) -> float:
        score = 0.0
        if self._values:
            score = math.erf(abs(value - self._mean) / (self._std * math.sqrt(2.0)))
        if len(self._values) < self.window:
            # While filling, every record refreshes the estimate; running sums keep that cheap.
            self._values.append(value)
            self._sum += value
            self._squares += value * value
            count = len(self._values)
            self._mean = self._sum / count
            self._std = math.sqrt(max(self._squares / count - self._mean**2, 0.0))
        else:
            self._pending.append(value)
            if len(self._pending) == self.step:
                self._values = self._values[self.step :] + self._pending
                self._pending = []
                self._mean = float(np.mean(self._values))
                self._std = float(np.std(self._values))
        self._std = max(self._std, 1e-6)
        return score


def _default_factory(probation: int) -> StreamingDetector:
    from finsent.alerts.detector import UnivariateSurge

    return UnivariateSurge(probation=probation)


def _null_factory(probation: int) -> StreamingDetector:
    return _Constant()


class _Constant:
    def update(self, timestamp: datetime | None, value: float) -> float:
        return 0.5


REFERENCES: dict[str, DetectorFactory] = {
    "windowed Gaussian (ours)": lambda probation: WindowedGaussian(probation),
    "null (no detections)": _null_factory,
}


def evaluate(
    nab_dir: Path,
    detector_factory: DetectorFactory = _default_factory,
    *,
    name: str = "finsent surge detector",
    references: bool = True,
    on_file: Callable[[str], None] | None = None,
    series: Iterable[Series] | None = None,
) -> NabReport:
    """Run the detector (and the references) over every present series; score all profiles."""
    started = time.perf_counter()
    profiles = load_profiles(nab_dir)
    present = list(series) if series is not None else load_series(nab_dir)
    if not present:
        raise FileNotFoundError(f"no labelled NAB series under {nab_dir / 'data'}")
    factories = {name: detector_factory, **(REFERENCES if references else {})}
    scores: dict[str, list[np.ndarray]] = {label: [] for label in factories}
    for item in present:
        for label, factory in factories.items():
            scores[label].append(run_detector(item, factory))
        if on_file:
            on_file(item.name)
    results = {
        label: {
            profile: score_corpus(present, scores[label], cost, profile)
            for profile, cost in profiles.items()
        }
        for label in factories
    }
    return NabReport(
        detector=name,
        files=tuple(item.name for item in present),
        windows=sum(len(item.windows) for item in present),
        rows=sum(len(item.values) for item in present),
        seconds=time.perf_counter() - started,
        profiles=results.pop(name),
        references=results,
    )


def score_corpus(
    present: Sequence[Series], scores: Sequence[np.ndarray], cost: CostMatrix, profile: str
) -> ProfileResult:
    """Optimize one threshold over the corpus and score it under one cost profile."""
    labels = [label_points(len(s.values), s.windows, s.probation, cost) for s in present]
    threshold, raw = best_threshold(scores, labels, cost)
    detected = false_positives = 0
    for score, lab in zip(scores, labels, strict=True):
        hits = (np.asarray(score) >= threshold) & (lab.window != PROBATION)
        false_positives += int((hits & (lab.window == OUTSIDE)).sum())
        detected += len(np.unique(lab.window[hits & (lab.window >= 0)]))
    windows = sum(len(s.windows) for s in present)
    return ProfileResult(
        profile=profile,
        threshold=threshold,
        raw=raw,
        null=-cost.fn * sum(lab.windows for lab in labels),
        # NAB's perfect score counts every labelled window, probationary or not.
        perfect=cost.tp * windows,
        detected=detected,
        windows=windows,
        false_positives=false_positives,
    )


def main(nab_dir: Path) -> int:
    """``finsent evaluate-detector --nab DIR``: print the report; 2 if the data is missing."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    try:
        present = load_series(nab_dir)
        if not present:
            raise FileNotFoundError(f"no labelled NAB series under {nab_dir / 'data'}")
    except (FileNotFoundError, NotADirectoryError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("scoring NAB series", total=len(present))
        report = evaluate(nab_dir, series=present, on_file=lambda _name: progress.advance(task))
    print(report.render())
    return 0
