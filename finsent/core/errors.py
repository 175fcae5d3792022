"""The one kind of error a user fixes themselves: a bad file, setting or address.

Library code raises a ``UserError`` whose message names the file, field or variable at fault and
says the fix; the CLI (``FinsentGroup`` in ``finsent/app/cli/common.py``) prints it as one line
and exits 1, instead of a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

import yaml


class UserError(Exception):
    """A mistake in the user's input or environment; the message names it and the fix."""

    @property
    def line(self) -> str:
        """The message as one line: a multi-line one (a problem per line) joined by "; "."""
        return one_line(str(self))


def one_line(text: str) -> str:
    """``text`` with its lines joined by "; " and runs of spaces collapsed."""
    parts = (" ".join(part.split()) for part in text.splitlines())
    return "; ".join(part for part in parts if part)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where a YAML error is and what it is, in one line (PyYAML's own text spans several),
    e.g. `` at line 3, column 1: expected ',' or ']'``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def hide_password(url: str) -> str:
    """A database URL fit to print: ``postgresql://me:secret@db/x`` → ``postgresql://me:***@db/x``."""
    return _URL_PASSWORD.sub(r"\1***@", url)
