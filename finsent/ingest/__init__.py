"""Ingest: feeds, news APIs and replay files → normalized, deduplicated ``NewsItem`` → ``news.raw``."""
