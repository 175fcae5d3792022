"""How stages run: Kafka I/O and dead letters, the store, the one stage runner, metrics,
signal handling, and the in-memory test kit (``testing``)."""
