"""The promotion gate of ``finsent retrain``: a candidate model against the current one.

Pure: it takes both models' figures and the rule, and says whether to promote and why. The
candidate passes when, on every fixed test split, it is no worse than the current model by
more than ``tolerance`` (sentiment macro-F1; topic accuracy where the split has topics), and
on the held-out corrections (the newest ones, never trained on) it is better by more than
``min_gain`` (accuracy over every held-out label, sentiment and topic alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from finsent.core.settings import Settings

# The figure the gate reads for each task of a fixed split.
SPLIT_METRIC = {"sentiment": "macro_f1", "topic": "accuracy"}


@dataclass(frozen=True)
class GateRule:
    tolerance: float = 0.01  # how much worse a fixed split may get
    min_gain: float = 0.0  # how much better the held-out corrections must get (strictly)

    @classmethod
    def from_settings(cls, settings: Settings) -> GateRule:
        return cls(settings.retrain_tolerance, settings.retrain_min_gain)


@dataclass(frozen=True)
class Check:
    name: str  # "phrasebank-50agree sentiment macro_f1", "held-out corrections accuracy"
    current: float
    candidate: float
    needed: str  # the condition, in words: ">= 0.8193", "> 0.6500"
    passed: bool

    @property
    def delta(self) -> float:
        return self.candidate - self.current


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]  # one line per failed check, or why it passed
    rule: GateRule

    def report(self) -> dict[str, Any]:
        """The JSON form stored with the version in the registry."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "rule": asdict(self.rule),
            "checks": [{**asdict(c), "delta": round(c.delta, 6)} for c in self.checks],
        }


def corrections_accuracy(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def decide(
    current: Mapping[str, Mapping[str, Mapping[str, Any]]],
    candidate: Mapping[str, Mapping[str, Mapping[str, Any]]],
    corrections: tuple[float, float, int],
    rule: GateRule,
) -> GateDecision:
    """``current`` and ``candidate``: per fixed split, per task, ``task_metrics`` figures.
    ``corrections``: (current's, candidate's accuracy on the held-out corrections, how many
    labels they hold)."""
    checks = []
    for split in sorted(current):
        for task, metric in SPLIT_METRIC.items():
            if task not in current[split] or task not in candidate.get(split, {}):
                continue
            before = float(current[split][task][metric])
            after = float(candidate[split][task][metric])
            floor = before - rule.tolerance
            checks.append(
                Check(
                    f"{split} {task} {metric}",
                    before,
                    after,
                    f">= {floor:.4f}",
                    after >= floor - 1e-12,
                )
            )
    before, after, held = corrections
    target = before + rule.min_gain
    checks.append(
        Check(
            f"held-out corrections accuracy (n={held})",
            before,
            after,
            f"> {target:.4f}",
            held > 0 and after > target + 1e-12,
        )
    )
    failed = [c for c in checks if not c.passed]
    if held == 0:
        reasons = ["no held-out corrections to judge the candidate on: add more corrections"]
    elif failed:
        reasons = [
            f"{c.name}: {c.candidate:.4f} against {c.current:.4f} (needs {c.needed})"
            for c in failed
        ]
    else:
        reasons = [
            f"every fixed split within {rule.tolerance:.4f} of the current model, and the "
            f"held-out corrections up {after - before:+.4f} ({before:.4f} → {after:.4f})"
        ]
    return GateDecision(not failed and held > 0, tuple(checks), tuple(reasons), rule)
