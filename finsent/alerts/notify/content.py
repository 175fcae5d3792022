"""What a notification says, whatever the channel: its status line, each alert's window and
figures against the baseline, and the headlines behind a spike with their attended words.

Slack and email render these same pieces in their own markup, so the channels never disagree.
Everything here is a pure function of the notification; nothing is escaped here, because each
channel escapes for its own markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from finsent.alerts.notify.model import Notification
from finsent.core.records import Alert, Headline

MAX_HEADLINES = 3
MAX_TITLE_CHARS = 300  # a hostile feed must not push a section past Slack's 3000-char limit
STATUS_LABELS = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}


def percent(share: float) -> str:
    # Small figures (a baseline's spread) keep a decimal; "0%" would hide them.
    return f"{share:.1%}" if 0 < abs(share) < 0.1 else f"{share:.0%}"


def window_text(a: Alert) -> str:
    start, end = a.window_start, a.window_end
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def figures_text(a: Alert) -> str:
    text = (
        f"negative share {percent(a.neg_share)} against a baseline of "
        f"{percent(a.baseline_mean)} ± {percent(a.baseline_std)} "
        f"(z = {a.zscore:.1f}, {a.count} stories)"
    )
    # Novelty-weighted evidence, when the record carries it (getattr: older records lack it):
    # it shows whether one syndicated story is behind the spike.
    weighted = getattr(a, "weighted_neg_share", None)
    weighted_count = getattr(a, "weighted_count", None)
    if weighted is not None and weighted_count is not None:
        text += f"; novelty-weighted {percent(weighted)} of {weighted_count:.1f}"
    return text


def alert_status(a: Alert) -> str:
    return f"{a.state.upper()} ({a.severity})"


def group_severity(n: Notification) -> str:
    firing = [a for a in n.alerts if a.state == "firing"] or list(n.alerts)
    return "critical" if any(a.severity == "critical" for a in firing) else "warning"


def summary(n: Notification) -> str:
    """One line for a Slack fallback or an email subject."""
    if len(n.alerts) == 1:
        a = n.alerts[0]
        tail = (
            "back to baseline"
            if a.state == "resolved"
            else f"negative share {percent(a.neg_share)}"
        )
        return f"{STATUS_LABELS[n.kind]} ({a.severity}) {a.key}: {tail} (z = {a.zscore:.1f})"
    return f"{STATUS_LABELS[n.kind]} ({group_severity(n)}) {n.group_key}: {len(n.alerts)} series"


def top_headlines(a: Alert, limit: int = MAX_HEADLINES) -> tuple[Headline, ...]:
    """The headlines that drove a negative spike: most negative first.

    The aggregator ranks by strength of either sign, so a strong positive story can be among
    them; it is shown only when there are too few negative ones."""
    return tuple(sorted(a.headlines, key=lambda h: h.score)[:limit])


def attended_tokens(h: Headline) -> tuple[str, ...]:
    """Attended words worth showing: no word-piece markers, no bare punctuation, no repeats."""
    seen: dict[str, str] = {}
    for token in h.top_tokens:
        word = token.strip().removeprefix("##")
        if any(ch.isalnum() for ch in word) and word.lower() not in seen:
            seen[word.lower()] = word
    return tuple(seen.values())


def highlight_spans(title: str, tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """``title`` cut into (text, attended?) pieces; a token matches whole words, any case."""
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    words = sorted({t for t in tokens if t}, key=len, reverse=True)
    if not words:
        return [(title, False)] if title else []
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
    )
    spans: list[tuple[str, bool]] = []
    pos = 0
    for match in pattern.finditer(title):
        if match.start() > pos:
            spans.append((title[pos : match.start()], False))
        spans.append((match.group(0), True))
        pos = match.end()
    if pos < len(title):
        spans.append((title[pos:], False))
    return spans


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line (no CR/LF: header injection), cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
