"""What a notification says, the same in every channel."""

from __future__ import annotations

import pytest
from support.notifications import (
    all_text,
    firing_alert,
    headline,
    notification,
    parts,
    resolved_alert,
)

from finsent.alerts.notify.content import (
    MAX_TITLE_CHARS,
    attended_tokens,
    figures_text,
    highlight_spans,
    one_line,
    percent,
    summary,
    top_headlines,
    window_text,
)
from finsent.alerts.notify.email import email_message
from finsent.alerts.notify.slack import slack_payload
from finsent.core.records import Alert


def test_figures_keep_a_decimal_only_for_small_shares() -> None:
    assert (percent(0.62), percent(0.05), percent(0.0), percent(-0.04)) == (
        "62%",
        "5.0%",
        "0%",
        "-4.0%",
    )
    assert figures_text(firing_alert()).startswith(
        "negative share 62% against a baseline of 21% ± 5.0% (z = 4.3, 37 stories)"
    )


def test_a_window_across_midnight_names_both_days() -> None:
    alert = firing_alert()
    assert window_text(alert) == "2024-05-01 14:00–14:15 UTC"
    late = firing_alert(
        window_start=alert.window_start.replace(hour=23, minute=50),
        window_end=alert.window_end.replace(day=2, hour=0, minute=5),
    )
    assert window_text(late) == "2024-05-01 23:50 – 2024-05-02 00:05 UTC"


def test_summary_of_one_alert_and_of_a_group() -> None:
    assert summary(notification()) == (
        "FIRING (critical) topic:Financials: negative share 62% (z = 4.3)"
    )
    assert summary(notification("resolved", (resolved_alert(),))) == (
        "RESOLVED (critical) topic:Financials: back to baseline (z = 0.4)"
    )
    group = (firing_alert(severity="warning"), firing_alert("ticker:JPM", severity="warning"))
    assert summary(notification("repeat", group)) == (
        "STILL FIRING (warning) topic:Financials: 2 series"
    )


def test_top_headlines_are_the_most_negative_first() -> None:
    titles = [h.title for h in top_headlines(firing_alert())]
    assert titles[:2] == [
        "Regional bank losses deepen as deposits flee",
        "Lender warns of default wave",
    ]
    assert len(titles) == 3 and "Rates rally lifts bank shares" not in titles


def test_attended_tokens_drop_word_pieces_punctuation_and_repeats() -> None:
    h = headline(1, "t", -0.5, ("##ing", "Loss", "loss", ",", " run ", "##"))
    assert attended_tokens(h) == ("ing", "Loss", "run")


def test_highlight_spans_match_whole_words_in_any_case() -> None:
    assert highlight_spans("Losses and loss  widen", ["loss", "WIDEN"]) == [
        ("Losses and ", False),
        ("loss", True),
        (" ", False),
        ("widen", True),
    ]
    assert highlight_spans("plain", []) == [("plain", False)]
    long = highlight_spans("x" * 1000, [])
    assert len(long[0][0]) == MAX_TITLE_CHARS and long[0][0].endswith("…")


def test_one_line_removes_line_breaks_and_cuts() -> None:
    assert one_line("Subject\r\nBcc: evil@example.com") == "Subject Bcc: evil@example.com"
    assert one_line("abcdef", limit=4) == "abc…"


def test_resolved_and_grouped_notices() -> None:
    n = notification(
        "resolved", alerts=(resolved_alert(), resolved_alert("ticker:JPM")), nid="n-res"
    )
    text = all_text(slack_payload(n)["blocks"])
    assert "RESOLVED" in text and "topic:Financials" in text and "ticker:JPM" in text
    assert text.count("Back to baseline") == 2
    assert "losses" not in text  # a resolved notice lists no headlines
    msg = email_message(n, "alerts@finsent.test", ["oncall@example.com"])
    assert msg["Subject"] == "[finsent] RESOLVED (critical) topic:Financials: 2 series"
    plain, _ = parts(msg)
    assert plain.count("Back to baseline") == 2 and "ticker:JPM" in plain


def test_novelty_weighted_evidence_is_shown_when_the_record_has_it() -> None:
    if "weighted_neg_share" not in Alert.__dataclass_fields__:
        pytest.skip("this Alert record has no novelty-weighted fields")
    alert = firing_alert(weighted_neg_share=0.55, weighted_count=30.2)
    n = notification(alerts=(alert,))
    assert "novelty-weighted 55% of 30.2" in all_text(slack_payload(n)["blocks"])
    text, html_body = parts(email_message(n, "a@b.test", ["c@d.test"]))
    assert "novelty-weighted 55% of 30.2" in text and "novelty-weighted 55% of 30.2" in html_body
