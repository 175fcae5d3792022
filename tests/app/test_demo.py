"""`finsent demo` as a new user runs it: everything starts, the dashboard answers, an alert fires,
and Ctrl-C leaves no process and no bound port behind."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from support.stages import wait_until

from finsent.app.launch import finsent_command
from finsent.app.ports import LOOPBACK, free_port, port_open
from finsent.runtime.store import Store, alerts, windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker.encode() in environ:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_demo_serves_dashboard_fires_alert_and_stops_cleanly(tmp_path: Path) -> None:
    kafka_port, dashboard_port = free_port(), free_port()
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {
        **os.environ,
        "FINSENT_CACHE_DIR": str(tmp_path / "cache"),
        "FINSENT_KAFKA_PORT": str(kafka_port),
        "FINSENT_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FINSENT_DASHBOARD_PORT": str(dashboard_port),
        "FINSENT_STORE_URL": store_url,
        "PYTHONUNBUFFERED": "1",
    }
    # The console is a pipe, as with `make demo | tee`; it is closed before Ctrl-C, which must
    # not stop the demo from cleaning up.
    read_end, write_end = os.pipe()
    demo = subprocess.Popen(
        finsent_command("demo", "--speed", "max"),
        env=env,
        stdout=write_end,
        stderr=subprocess.STDOUT,
    )
    os.close(write_end)
    console: list[bytes] = []
    hang_up = threading.Event()

    def read_console() -> None:
        while not hang_up.is_set():
            if select.select([read_end], [], [], 0.2)[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                console.append(chunk)
        os.close(read_end)

    reader = threading.Thread(target=read_console)
    reader.start()

    def output() -> str:
        return b"".join(console).decode(errors="replace")

    try:
        health = f"http://127.0.0.1:{dashboard_port}/_stcore/health"

        def dashboard_up() -> bool:
            assert demo.poll() is None, output()
            try:
                return httpx.get(health, timeout=2).text == "ok"
            except httpx.HTTPError:
                return False

        wait_until(dashboard_up, 180, "the dashboard health check")
        page = httpx.get(f"http://127.0.0.1:{dashboard_port}/", timeout=5)
        assert page.status_code == 200 and "<title>" in page.text

        store = Store(store_url)
        wait_until(lambda: store.query(alerts), 120, "an alert from the scripted episode")
        fired = store.query(alerts)
        assert any(row["key"] in ("topic:Financials", "ticker:NWB", "overall") for row in fired)
        assert len(store.query(windows)) > 20
        wait_until(lambda: "ALERT firing" in output(), 10, "the alert on the console")
        assert "dashboard: http://127.0.0.1:" in output()
    finally:
        hang_up.set()  # the reader of the console goes away ...
        reader.join(5)
        demo.send_signal(signal.SIGINT)  # ... then Ctrl-C
        code = demo.wait(90)

    assert code == 0, output()
    assert not port_open(LOOPBACK, dashboard_port)
    assert not port_open(LOOPBACK, kafka_port)
    assert processes_mentioning(str(tmp_path / "cache")) == []


def test_demo_refuses_a_busy_dashboard_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            finsent_command("demo"),
            env={
                **os.environ,
                "FINSENT_CACHE_DIR": str(tmp_path),
                "FINSENT_DASHBOARD_PORT": str(port),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port 127.0.0.1:{port} is already in use" in result.stderr
    assert not (tmp_path / "kafka").exists()  # nothing was started
