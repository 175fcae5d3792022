"""Runs a throwaway PostgreSQL server from the Debian packages, no Docker.

``initdb`` makes a cluster under ``home``; the server listens on 127.0.0.1 only, trusts loopback
connections and keeps its unix socket inside ``home``, so it never meets the system's cluster.
Tests start one per session and make a fresh database per test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from finsent.app.kafka_local import LaunchError

SUPERUSER = "postgres"


class PostgresLaunchError(LaunchError):
    """A clear, user-facing reason the local PostgreSQL server cannot start or stop."""


def find_bindir() -> Path | None:
    """The newest Debian server binaries (/usr/lib/postgresql/<ver>/bin), else those on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)],
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path))
    for initdb in candidates:
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


class LocalPostgres:
    def __init__(self, home: Path, port: int, host: str = "127.0.0.1") -> None:
        self.home = Path(home)
        self.port = port
        self.host = host
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "socket"
        self.log_file = self.home / "server.log"
        # PostgreSQL refuses to run as root, so root runs it as the packages' `postgres` user.
        self.as_root = os.geteuid() == 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    # -- public ---------------------------------------------------------------

    def start(self, timeout_s: float = 60) -> None:
        """Create the cluster on first use, start it and return once it accepts connections."""
        bindir = find_bindir()
        if bindir is None:
            raise PostgresLaunchError(
                "the PostgreSQL server binaries (initdb, pg_ctl) are missing; "
                "install them with `bash scripts/ensure_postgres.sh` (apt-get install postgresql)"
            )
        self._prepare_home()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        elif self._run(bindir / "pg_ctl", "status", "-D", self.data_dir).returncode == 0:
            return  # ours already runs
        result = self._run(
            bindir / "pg_ctl",
            "start",
            "--wait",
            f"--timeout={int(timeout_s)}",
            "-D",
            self.data_dir,
            "-l",
            self.log_file,
            # The port is given here, not in the config, so one cluster can move between ports.
            "-o",
            f"-p {self.port}",
        )
        if result.returncode != 0:
            raise PostgresLaunchError(
                f"PostgreSQL did not start on {self.host}:{self.port}:\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop our server (fast shutdown: open sessions are rolled back); True if one ran."""
        bindir = find_bindir()
        if bindir is None or not (self.data_dir / "postmaster.pid").exists():
            return False
        result = self._run(
            bindir / "pg_ctl",
            "stop",
            "-D",
            self.data_dir,
            "--wait",
            f"--timeout={int(timeout_s)}",
            "-m",
            "fast",
        )
        if result.returncode != 0:
            raise PostgresLaunchError(
                f"PostgreSQL did not stop:\n{result.stdout}{result.stderr}\n{self.log_tail()}"
            )
        return True

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        conninfo = f"host={self.host} port={self.port} user={SUPERUSER} dbname=postgres"
        # CREATE DATABASE cannot run inside a transaction block.
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no server log at {self.log_file})"
        return f"last lines of {self.log_file}:\n" + "\n".join(text)

    # -- internals ------------------------------------------------------------

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not self.as_root:
            return
        try:
            for path in (self.home, self.socket_dir):
                shutil.chown(path, SUPERUSER, SUPERUSER)
        except LookupError as exc:
            raise PostgresLaunchError(
                f"running as root needs the `{SUPERUSER}` system user, which the Debian "
                "postgresql package creates; install it or run as an ordinary user"
            ) from exc
        # A home under a root-only folder (e.g. a 0700 pytest tmp dir) is out of its reach.
        if self._run("test", "-w", self.home, "-a", "-x", self.home).returncode != 0:
            raise PostgresLaunchError(
                f"the `{SUPERUSER}` user cannot reach {self.home}; "
                "put it under a folder every user can enter, such as a fresh temporary folder"
            )

    def _initdb(self, bindir: Path) -> None:
        result = self._run(
            bindir / "initdb",
            "-D",
            self.data_dir,
            f"--username={SUPERUSER}",
            "--auth=trust",  # only loopback can connect (below), and the data is throwaway
            "--encoding=UTF8",
            "--locale=C",  # the same on every machine, whatever locales it has
        )
        if result.returncode != 0:
            raise PostgresLaunchError(f"initdb failed:\n{result.stdout}{result.stderr}")
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                # Nothing here must survive a machine crash, so skip the syncs that make
                # every commit wait on the disk.
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def _run(self, *cmd: object) -> subprocess.CompletedProcess[str]:
        argv = [str(part) for part in cmd]
        if self.as_root:
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        # cwd=home: the server user may not be allowed into the caller's working directory.
        return subprocess.run(
            argv, cwd=self.home, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
