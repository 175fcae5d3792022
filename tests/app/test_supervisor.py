"""The one process supervisor, on real (tiny) child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stages import wait_until

import finsent.app.supervisor as supervisor_module
from finsent.app.launch import python_command
from finsent.app.supervisor import Exited, Supervisor

# A stage in miniature: says it is up, and on SIGTERM says so and exits 0.
STAGE = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), sys.exit(0)))\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)
# A child that ignores SIGTERM and leaves a grandchild in its process group.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(grandchild.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def python(code: str) -> list[str]:
    return python_command("-c", code)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (whoever inherited it may not reap it at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(dict(os.environ), tmp_path / "logs")
    yield supervisor
    supervisor.stop_all(timeout_s=1)


def test_each_child_logs_to_its_own_file_in_its_own_session(children: Supervisor) -> None:
    first = children.start("first", python(STAGE))
    children.start("second", python("print('second says hi')"), one_shot=True)

    wait_until(lambda: "up" in children.log("first"), 10, "the first child's greeting")
    wait_until(lambda: children.procs["second"].poll() is not None, 10, "the one-shot's exit")
    assert children.log("second") == "second says hi\n"
    assert (children.log_dir / "first.log").read_text() == children.log("first")
    assert os.getsid(first.pid) == first.pid != os.getsid(0)  # Ctrl-C reaches us, not it
    assert list(children.procs) == ["first", "second"]


def test_dead_reports_an_unexpected_exit_only(children: Supervisor) -> None:
    children.start("runs", python(STAGE))
    children.start("crashes", python("import sys; print('boom'); sys.exit(3)"))
    children.start("replay", python("pass"), one_shot=True)
    children.start("stopped", python(STAGE))
    wait_until(lambda: "up" in children.log("stopped"), 10, "the child to stop")
    assert children.stop_one("stopped", timeout_s=5) == 0

    wait_until(children.dead, 10, "the crash")
    time.sleep(0.2)  # the one-shot has had time to exit too

    assert children.dead() == [Exited("crashes", 3)]
    assert children.log_tail("crashes") == "boom"
    assert "stopping" in children.log("stopped")  # it had its SIGTERM, not a kill


def test_stop_all_stops_the_newest_first_and_reports_every_exit_code(
    children: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    signalled: list[int] = []
    terminate = supervisor_module._terminate

    def recording(process: subprocess.Popen[bytes]) -> None:
        signalled.append(process.pid)
        terminate(process)

    monkeypatch.setattr(supervisor_module, "_terminate", recording)
    stages = ("scorer", "router", "aggregator")
    for name in stages:
        children.start(name, python(STAGE))
    children.start("replay", python("pass"), one_shot=True)
    wait_until(lambda: all("up" in children.log(n) for n in stages), 10, "every stage up")
    wait_until(lambda: children.procs["replay"].poll() is not None, 10, "the replay's exit")

    codes = children.stop_all(timeout_s=10)

    pids = {process.pid: name for name, process in children.procs.items()}
    assert [pids[pid] for pid in signalled] == ["aggregator", "router", "scorer"]
    assert codes == {"scorer": 0, "router": 0, "aggregator": 0, "replay": 0}
    assert list(codes) == ["scorer", "router", "aggregator", "replay"]  # start order
    assert children.stop_all(timeout_s=1) == codes  # repeating it is harmless
    assert children.dead() == []


def test_a_child_that_ignores_sigterm_is_killed_with_what_it_spawned(
    children: Supervisor,
) -> None:
    children.start("stubborn", python(STUBBORN))
    wait_until(lambda: children.log("stubborn").strip(), 10, "the grandchild's pid")
    grandchild = int(children.log("stubborn"))

    started = time.monotonic()
    code = children.stop_one("stubborn", timeout_s=0.5)

    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 5
    wait_until(lambda: gone(grandchild), 10, "the grandchild to be killed with its group")


def test_a_name_is_reused_only_once_its_child_has_exited(children: Supervisor) -> None:
    children.start("stage", python(STAGE))
    with pytest.raises(ValueError, match="still runs"):
        children.start("stage", python(STAGE))
    wait_until(lambda: "up" in children.log("stage"), 10, "the first life")
    assert children.stop_one("stage", timeout_s=5) == 0

    children.start("stage", python("print('second life')"), one_shot=True)
    wait_until(lambda: "second life" in children.log("stage"), 10, "the restart's output")
    assert children.log("stage").startswith("up\n")  # one log across restarts
    with pytest.raises(KeyError, match="no child named 'other'"):
        children.stop_one("other")


def test_as_a_context_manager_it_stops_every_child_on_the_way_out(tmp_path: Path) -> None:
    with Supervisor(dict(os.environ), tmp_path) as children:
        process = children.start("stage", python(STAGE))
        wait_until(lambda: "up" in children.log("stage"), 10, "the child")
    assert process.poll() == 0
