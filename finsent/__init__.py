"""finsent: a streaming financial-news sentiment monitor, in one-way layers.

``core`` (settings, records, vocabulary) → ``runtime`` (Kafka I/O, the store, the stage runner)
→ ``model`` → ``ingest`` | ``stream`` | ``alerts`` → ``app`` (CLI, demo, backtest) and
``dashboard``. ARCHITECTURE.md in the repository walks one story through them.
"""

__version__ = "0.1.0"
