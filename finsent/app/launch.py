"""Command lines for the Python child processes finsent starts (stages, replays, Streamlit).

Stop-gap until everything lives under the one ``finsent`` package: the project installs
generic top-level packages (``alerts``, ``model``, ``stream``, ``ingest``, ``dashboard``), and
``python -m ...`` puts the current folder first on ``sys.path``, so a user's own ``alerts.py``
there would be imported instead of ours. ``-P`` (Python 3.11+) leaves that folder out.
"""

from __future__ import annotations

import sys

SAFE_PATH = "-P"  # don't prepend the current folder (or the script's) to sys.path


def python_command(*args: str) -> list[str]:
    """This interpreter, with ``args``, never importing from the current folder."""
    return [sys.executable, SAFE_PATH, *args]


def finsent_command(*args: str) -> list[str]:
    """``finsent <args>`` run by this interpreter, as every stage child is started."""
    return python_command("-m", "finsent", *args)
