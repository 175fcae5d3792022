"""Alerting: negative-spike detection against each series' own baseline, and notification."""
