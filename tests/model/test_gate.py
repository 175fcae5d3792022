"""The promotion gate: pure, from both models' figures and the rule to a verdict with reasons."""

from __future__ import annotations

from typing import Any

from finsent.model.gate import GateRule, decide


def figures(sentiment_f1: float, topic_accuracy: float) -> dict[str, Any]:
    return {
        "twitter-valid": {"sentiment": {"macro_f1": sentiment_f1, "accuracy": 0.9}},
        "silver-test": {
            "sentiment": {"macro_f1": sentiment_f1, "accuracy": 0.9},
            "topic": {"macro_f1": 0.1, "accuracy": topic_accuracy},
        },
    }


def test_a_candidate_better_on_corrections_and_within_tolerance_passes() -> None:
    decision = decide(
        figures(0.80, 0.70), figures(0.795, 0.71), (0.40, 0.75, 40), GateRule(tolerance=0.01)
    )
    assert decision.passed
    assert len(decision.checks) == 4  # three fixed figures and the held-out corrections
    assert "held-out corrections up +0.3500" in decision.reasons[0]


def test_a_deliberately_worse_candidate_is_refused_with_the_split_named() -> None:
    decision = decide(
        figures(0.80, 0.70), figures(0.60, 0.70), (0.40, 0.90, 40), GateRule(tolerance=0.01)
    )
    assert not decision.passed
    assert sorted(decision.reasons) == [
        "silver-test sentiment macro_f1: 0.6000 against 0.8000 (needs >= 0.7900)",
        "twitter-valid sentiment macro_f1: 0.6000 against 0.8000 (needs >= 0.7900)",
    ]


def test_no_gain_on_the_corrections_is_refused_even_when_nothing_got_worse() -> None:
    same = figures(0.80, 0.70)
    decision = decide(same, same, (0.50, 0.50, 10), GateRule())
    assert not decision.passed
    assert decision.reasons == (
        "held-out corrections accuracy (n=10): 0.5000 against 0.5000 (needs > 0.5000)",
    )


def test_min_gain_and_tolerance_are_the_rule() -> None:
    strict = GateRule(tolerance=0.0, min_gain=0.2)
    assert not decide(figures(0.8, 0.7), figures(0.8, 0.7), (0.5, 0.65, 20), strict).passed
    assert decide(figures(0.8, 0.7), figures(0.8, 0.7), (0.5, 0.75, 20), strict).passed
    lenient = GateRule(tolerance=0.3)
    assert decide(figures(0.8, 0.7), figures(0.55, 0.45), (0.5, 0.6, 20), lenient).passed


def test_without_held_out_corrections_nothing_is_promoted() -> None:
    decision = decide(figures(0.8, 0.7), figures(0.9, 0.8), (0.0, 0.0, 0), GateRule())
    assert not decision.passed
    assert decision.reasons == (
        "no held-out corrections to judge the candidate on: add more corrections",
    )


def test_the_report_is_json_ready_and_says_why() -> None:
    import json

    report = decide(figures(0.8, 0.7), figures(0.7, 0.7), (0.5, 0.6, 20), GateRule()).report()
    again = json.loads(json.dumps(report))
    assert again["passed"] is False
    assert again["rule"] == {"tolerance": 0.01, "min_gain": 0.0}
    assert {c["name"] for c in again["checks"] if not c["passed"]} == {
        "twitter-valid sentiment macro_f1",
        "silver-test sentiment macro_f1",
    }
    assert again["checks"][0]["delta"] == round(
        again["checks"][0]["candidate"] - again["checks"][0]["current"], 6
    )
