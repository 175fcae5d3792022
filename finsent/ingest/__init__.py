"""Ingest: sources (replay files now; feeds and APIs in the ingest issue) → ``NewsItem`` → ``news.raw``."""
