"""Stream processing: the scoring stage, the router (keyed repartition) and event-time windows."""
