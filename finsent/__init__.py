"""finsent core: settings, record types, Kafka I/O, storage, the local Kafka launcher and the CLI."""

__version__ = "0.1.0"
