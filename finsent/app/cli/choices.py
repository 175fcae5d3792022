"""The options that take one of a fixed set of values, as enums: the shell completes them, and
a wrong value is refused before the command runs, naming the choices.

Each mirrors a tuple the library owns (tests/app/test_cli.py checks that they agree); they
are spelled out here so that parsing the command line never imports the model.
"""

from __future__ import annotations

from enum import StrEnum


class ScorerName(StrEnum):
    """``finsent.model.scorer.SCORERS``."""

    attention = "attention"
    lexicon = "lexicon"


class Backend(StrEnum):
    """``finsent.model.infer.BACKENDS``."""

    auto = "auto"
    onnx_int8 = "onnx-int8"
    torch_int8 = "torch-int8"
    torch_fp32 = "torch-fp32"


class SilenceSeverity(StrEnum):
    """``finsent.core.vocabulary.SEVERITIES``, or any (``finsent.alerts.silences``)."""

    any = "any"
    warning = "warning"
    critical = "critical"


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


class LogLevel(StrEnum):
    """The standard ``logging`` levels (``Settings.log_level``)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"
