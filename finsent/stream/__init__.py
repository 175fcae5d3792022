"""Stream processing: the scoring stage and event-time window aggregation."""
