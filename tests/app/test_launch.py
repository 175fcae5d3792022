"""Python children we start never put the current folder on sys.path: a user's finsent.py (or
alerts.py, ...) there must not stand in for our package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.stages import LOOKALIKES, lookalike_folder

ROOT = Path(__file__).resolve().parents[2]


def test_commands_run_this_python_with_the_safe_path_flag() -> None:
    from finsent.app.launch import finsent_command, python_command

    assert python_command("-c", "pass") == [sys.executable, "-P", "-c", "pass"]
    assert finsent_command("scorer") == [sys.executable, "-P", "-m", "finsent", "scorer"]


def test_the_dashboard_command_uses_the_safe_path_flag() -> None:
    from finsent.app.demo import dashboard_command
    from finsent.core.settings import Settings

    cmd = dashboard_command(Settings())
    assert cmd[:5] == [sys.executable, "-P", "-m", "streamlit", "run"]
    # Streamlit puts the app's folder first on sys.path; none of its modules may be named like
    # one of our top-level packages.
    app_dir = Path(cmd[5]).parent
    assert app_dir.name == "dashboard"
    assert not {p.stem for p in app_dir.glob("*.py")} & {"finsent", *LOOKALIKES}


def test_a_child_started_from_a_folder_of_lookalikes_imports_ours(tmp_path: Path) -> None:
    from finsent.app.launch import python_command

    cwd = lookalike_folder(tmp_path / "user")
    code = "import finsent.alerts.rules; print(finsent.alerts.rules.__file__)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    result = subprocess.run(
        python_command("-c", code), cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(result.stdout.strip()) == ROOT / "finsent" / "alerts" / "rules.py"


def test_every_python_child_goes_through_the_helper() -> None:
    """No other module of ours builds a command from sys.executable by hand."""
    offenders = []
    for folder in ("finsent",):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "finsent" / "app" / "launch.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\[\s*sys\.executable\b", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "start Python children with finsent.app.launch:\n" + "\n".join(offenders)
