"""Helpers shared by tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from finsent.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StageProcesses:
    """Runs `finsent <stage>` processes the way production does, and stops them at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = {**os.environ, **settings.child_env(), "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "finsent.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def tails(self, lines: int = 15) -> str:
        """The last lines of every stage's log, for a failure message."""
        parts = []
        for name in self.procs:
            text = self.log(name).splitlines()[-lines:]
            parts.append(f"--- {name} (exit {self.procs[name].poll()}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop_all(self, timeout_s: float = 30) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    interval_s: float = 0.3,
    context: Callable[[], str] | None = None,
) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    detail = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")


# Eight different stories of one bank's crisis (Financials, negative with both scorers). Not one
# repeated headline: alerting counts novelty-weighted stories, so a single syndicated headline
# would (rightly) not fire.
CRASH_HEADLINES = (
    "Northwind Bank shares plunge as deposit losses mount",
    "Northwind Bank warns of heavy losses as loan book sours",
    "Depositors withdraw funds from Northwind Bank amid liquidity concerns",
    "Northwind Bank credit rating downgraded on severe losses",
    "Regulators probe Northwind Bank after failed capital raise",
    "Northwind Bank halts trading after steep decline and default fears",
    "Bank stocks tumble as Northwind crisis deepens, losses spread",
    "Northwind Bank faces investigation over misleading disclosures",
)
