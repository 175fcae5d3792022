"""The words every stage shares: sentiment labels, alert lifecycle states and severities.

Each is a ``Literal`` type for the records and a tuple of its values, in their one order, taken
from that type so the two cannot drift apart. The sentiment order is the model's output order
(index 0 is negative); the lifecycle order is the order an alert goes through its states, used
to sort events that share a timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

Sentiment = Literal["negative", "neutral", "positive"]
AlertState = Literal["pending", "firing", "resolved"]
Severity = Literal["warning", "critical"]

SENTIMENTS: tuple[Sentiment, ...] = get_args(Sentiment)
ALERT_STATES: tuple[AlertState, ...] = get_args(AlertState)  # lifecycle order
SEVERITIES: tuple[Severity, ...] = get_args(Severity)  # mildest first

# An alert state's place in the lifecycle: pending 0, firing 1, resolved 2.
STATE_ORDER: Mapping[str, int] = MappingProxyType({s: i for i, s in enumerate(ALERT_STATES)})
