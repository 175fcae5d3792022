"""Runs a real single-node Apache Kafka 4 (KRaft) from the official Maven Central jars, no Docker.

The jars are resolved once with ``mvn`` into the cache directory; the broker's data, log and pid
file live there too, under one folder per port, so tests and the demo can run their own brokers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from finsent.app.ports import port_open
from finsent.core.settings import Settings

KAFKA_VERSION = "4.1.1"


class LaunchError(RuntimeError):
    """A clear, user-facing reason something the CLI starts cannot start."""


class KafkaLaunchError(LaunchError):
    """A clear, user-facing reason the local broker cannot start or stop."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return f"Kafka {KAFKA_VERSION} running (pid {self.pid}) at {self.bootstrap}; log {self.log_file}"
        return f"Kafka not running at {self.bootstrap}"


class LocalKafka:
    def __init__(self, settings: Settings, home: Path | None = None) -> None:
        self.settings = settings
        self.host = settings.kafka_host
        self.port = settings.kafka_port
        self.controller_port = settings.controller_port
        self.jars_dir = settings.cache_dir / "kafka" / f"jars-{KAFKA_VERSION}"
        self.home = home or settings.cache_dir / "kafka" / f"broker-{self.port}"
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.pid_file = self.home / "broker.pid"
        self.config_file = self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # -- public ---------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(
            running=pid is not None and port_open(self.host, self.port),
            pid=pid,
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            log_file=self.logs_dir / "server.log",
        )

    def start(self, timeout_s: float = 90) -> BrokerStatus:
        """Start the broker unless ours already runs; return once it accepts connections."""
        if self._live_pid() is not None:
            self._wait_ready(timeout_s)
            return self.status()
        java = _require_java()
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise KafkaLaunchError(
                    f"port {self.host}:{port} is already in use by another program; "
                    "stop it or set FINSENT_KAFKA_PORT to a free port"
                )
        self.ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(java)
        log_config = resources.files("finsent.app.kafka_runtime") / "log4j2.yaml"
        cmd = [
            java,
            f"-Xms{self.settings.kafka_heap}",
            f"-Xmx{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # faster start, plenty for one local node
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            str(self.jars_dir / "*"),
            "kafka.Kafka",
            str(self.config_file),
        ]
        with open(self.logs_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_ready(timeout_s, proc)
        except KafkaLaunchError:
            self.stop()
            raise
        return self.status()

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop our broker; True if one was running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """kill -9, for fault tests."""
        pid = self._live_pid()
        if pid is not None:
            _signal(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def ensure_jars(self) -> Path:
        marker = self.jars_dir / ".complete"
        if marker.exists():
            return self.jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLaunchError(
                "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central; "
                "install it (e.g. apt-get install maven)"
            )
        staging = self.jars_dir.with_name(self.jars_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        pom = resources.files("finsent.app.kafka_runtime") / "pom.xml"
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom_path),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                    "-DincludeScope=runtime",
                    f"-Dkafka.version={KAFKA_VERSION}",
                ],
                capture_output=True,
                text=True,
            )
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise KafkaLaunchError(
                "could not resolve the Kafka jars with Maven:\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        (staging / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(self.jars_dir, ignore_errors=True)
        staging.rename(self.jars_dir)
        return self.jars_dir

    # -- internals ------------------------------------------------------------

    def _write_config(self) -> None:
        h, p, c = self.host, self.port, self.controller_port
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{h}:{c}",
                    f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                    f"advertised.listeners=PLAINTEXT://{h}:{p}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    f"num.partitions={self.settings.partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )

    def _format(self, java: str) -> None:
        cluster_id = new_cluster_id()
        result = subprocess.run(
            [
                java,
                "-cp",
                str(self.jars_dir / "*"),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "KAFKA_LOG4J_OPTS": ""},
        )
        if result.returncode != 0:
            raise KafkaLaunchError(
                f"formatting the KRaft storage failed:\n{result.stdout}{result.stderr}"
            )

    def _wait_ready(self, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise KafkaLaunchError(
                    f"the broker exited with code {proc.returncode}; see {self.logs_dir / 'server.log'}"
                )
            if port_open(self.host, self.port) and self._api_ready():
                return
            time.sleep(0.3)
        raise KafkaLaunchError(f"the broker did not accept connections in {timeout_s:.0f}s")

    def _api_ready(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except (KafkaError, OSError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaLaunchError(
            "Java 17 or newer is needed to run Kafka; install it (e.g. openjdk-17-jre)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major and major < 17:
        raise KafkaLaunchError(f"Kafka 4 needs Java 17 or newer; found: {out.splitlines()[0]}")
    return java


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def new_cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own, it never starts with '-', which the
    storage tool's argument parser would take for an option (1 in 64 ids did)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
