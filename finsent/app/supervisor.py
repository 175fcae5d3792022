"""The one supervisor of the child processes finsent starts: the stages of the demo and the
backtest, the demo's dashboard and replay, and the stages that tests and benchmarks run.

Each child gets a name, its own log file (``<log_dir>/<name>.log``) and its own session. The
session keeps the terminal's Ctrl-C away from the children: it reaches the parent alone, which
then stops them in order, and a closed console cannot wedge a child that only writes to its
file. Stopping is SIGTERM first (a stage finishes its batch, flushes and commits), then SIGKILL
to the child's whole process group once the timeout passes, so nothing it spawned is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import NamedTuple

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 20.0  # how long a child may take to finish its batch after SIGTERM
TAIL_LINES = 15


class Exited(NamedTuple):
    """A child that exited when it should still run."""

    name: str
    code: int


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    log_path: Path
    one_shot: bool  # expected to exit by itself (a replay), so its exit is no failure
    stopped: bool = False  # stopped on purpose, not dead
    reaped: bool = False  # waited for and its process group killed: nothing left to stop

    def reap(self, name: str, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the child, then kill its process group: the child if
        it is still there, and anything it spawned in any case. Its exit code."""
        if not self.reaped:
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", name, timeout_s)
            # Once only: after that the group is gone and its id may be another's.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.reaped = True
        return self.process.wait()


class Supervisor:
    """Named child processes, each with its own log file and session, stopped newest first.

    ``env`` is the environment every child starts with; it may be changed between starts
    (e.g. a static group member id per child). Usable as a context manager that stops every
    child on the way out.
    """

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env: dict[str, str] = dict(env)
        self.log_dir = log_dir
        self._children: dict[str, _Child] = {}  # in start order

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self, name: str, command: Sequence[str], *, one_shot: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` as the child ``name``; its output goes to ``<log_dir>/<name>.log``.

        ``one_shot``: the child is expected to exit by itself, so ``dead`` never reports it. A
        name may be reused once its child has exited (its log goes on in the same file).
        """
        old = self._children.get(name)
        if old is not None:
            if old.process.poll() is None:
                raise ValueError(f"a child named {name!r} still runs (pid {old.process.pid})")
            old.reap(name, 0)  # whatever the exited one left behind goes with it
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                list(command),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.pop(name, None)  # a restart goes to the end of the stop order
        self._children[name] = _Child(process, log_path, one_shot)
        log.info("started %s (pid %d)", name, process.pid)
        return process

    @property
    def procs(self) -> Mapping[str, subprocess.Popen[bytes]]:
        """Every child's process by name, in start order (read-only)."""
        return MappingProxyType({name: c.process for name, c in self._children.items()})

    def dead(self) -> list[Exited]:
        """Children that exited by themselves while they should run: neither stopped on
        purpose nor one-shot."""
        return [
            Exited(name, code)
            for name, child in self._children.items()
            if (code := child.process.poll()) is not None
            and not child.stopped
            and not child.one_shot
        ]

    def log(self, name: str) -> str:
        """Everything the child ``name`` wrote so far."""
        return self._child(name).log_path.read_text(errors="replace")

    def log_tail(self, name: str, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the child's log, for an error message."""
        return "\n".join(self.log(name).splitlines()[-lines:])

    def tails(self, lines: int = TAIL_LINES) -> str:
        """The end of every child's log, each under its name and exit code."""
        return "\n".join(
            f"--- {name} (exit {child.process.poll()}) ---\n{self.log_tail(name, lines)}"
            for name, child in self._children.items()
        )

    def stop_one(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Stop one child: SIGTERM, then SIGKILL to its process group after ``timeout_s``;
        its exit code."""
        child = self._child(name)
        child.stopped = True
        _terminate(child.process)
        return child.reap(name, timeout_s)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """Stop every child, newest first: SIGTERM to all of them, then SIGKILL to what is
        left once ``timeout_s`` has passed; every child's exit code by name. Safe to repeat."""
        newest_first = list(reversed(self._children.items()))
        for name, child in newest_first:
            child.stopped = True
            if child.process.poll() is None:
                log.info("stopping %s", name)
                _terminate(child.process)
        deadline = time.monotonic() + timeout_s
        codes = {
            name: child.reap(name, max(0.1, deadline - time.monotonic()))
            for name, child in newest_first
        }
        return {name: codes[name] for name in self._children}  # in start order

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(
                f"no child named {name!r}; started: {', '.join(self._children)}"
            ) from None


def _terminate(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
