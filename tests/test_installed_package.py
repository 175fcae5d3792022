"""finsent installed from its wheel into a clean venv works from any folder, even one that holds
files named like our top-level packages (alerts.py, model.py, ...): the console script and every
Python child we start keep the current folder off sys.path.

The wheel is built from a copy of the project (so the checkout gets no build/ folder) with this
venv's setuptools, and installed with the clean venv's own pip, offline and without
dependencies. The venv gets only the dependencies that `pip install ./` brings, no extra, from
requirements/base.lock (by uv, from its cache where `make test` already filled it), so a
module that the commands import but the project does not declare fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support.stages import lookalike_folder

# Once top-level packages of their own; now only subpackages of finsent.
STAGE_PACKAGES = ("alerts", "model", "stream", "ingest", "dashboard")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]


def clean_env(venv: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120):
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def copy_project(dest: Path) -> Path:
    """What the wheel is built from: pyproject.toml, the README and the packages it lists."""
    import shutil

    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "finsent", dest / "finsent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("installed")
    src = copy_project(work / "src")
    build = run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))",
            work / "dist",
        ],
        cwd=src,
        env=clean_env(),
        timeout=180,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = work / "dist" / build.stdout.strip().splitlines()[-1]
    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", venv], cwd=work, env=clean_env(), timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    python = venv / "bin" / "python"
    uv = run(["bash", ROOT / "scripts" / "bootstrap.sh", "--uv"], ROOT, os.environ.copy()).stdout
    base = ROOT / "requirements" / "base.lock"
    sync = [uv.strip(), "pip", "sync", "-q", "--require-hashes", "--python", python, base]
    synced = run(sync, work, clean_env(venv), 300)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    pip = [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
    installed = run([*pip, "--disable-pip-version-check", wheel], work, clean_env(venv), 180)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


pytestmark = pytest.mark.slow


def test_the_installed_package_is_imported_with_its_data(venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib, importlib.util, json, sys\n"
        f"names = {('finsent', 'finsent.app.kafka_runtime', *(f'finsent.{n}' for n in STAGE_PACKAGES))!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n"
        f"stray = [n for n in {STAGE_PACKAGES!r} if importlib.util.find_spec(n)]\n"
        "assert not stray, f'installed at top level: {stray}'\n"
    )
    result = run([venv / "bin" / "python", "-P", "-c", code], tmp_path, clean_env(venv))
    assert result.returncode == 0, result.stderr
    import json

    files = {name: Path(f) for name, f in json.loads(result.stdout).items()}
    for name, file in files.items():
        assert file.is_relative_to(venv), f"{name} came from {file}, not the installed package"
    # The package data: events, the Kafka runtime's files, the company table, every file of the
    # shipped artifacts.
    finsent_dir = files["finsent"].parent
    for path in (ROOT / "finsent" / "app" / "events").glob("*.yaml"):
        assert (finsent_dir / "app" / "events" / path.name).is_file(), path.name
    for name in ("pom.xml", "log4j2.yaml"):
        assert (finsent_dir / "app" / "kafka_runtime" / name).is_file(), name
    assert (finsent_dir / "ingest" / "data" / "company_aliases.csv.gz").is_file()  # the tagger's
    artifacts = ROOT / "finsent" / "model" / "artifacts"
    shipped = [p.relative_to(artifacts) for p in artifacts.rglob("*") if p.is_file()]
    assert shipped
    for rel in shipped:
        assert (files["finsent.model"].parent / "artifacts" / rel).is_file(), (
            f"not installed: {rel}"
        )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--version"], f"finsent {VERSION}"),
        (["demo", "--help"], "Start Kafka and every stage"),
        (["scorer", "--help"], "--scorer"),
    ],
)
def test_the_command_works_beside_lookalike_modules(
    venv: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    cwd = lookalike_folder(tmp_path / "user")
    result = run([venv / "bin" / "finsent", *args], cwd, clean_env(venv))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert expected in result.stdout, out
    assert "shadowed" not in out and "Traceback" not in out, out
    if args == ["--version"]:
        assert result.stdout.strip() == f"finsent {VERSION}"


def test_children_of_the_installed_package_import_ours(venv: Path, tmp_path: Path) -> None:
    """A child started by our helper, from the user's folder, imports our packages."""
    cwd = lookalike_folder(tmp_path / "user")
    child = "import finsent.alerts.rules; print(finsent.alerts.rules.__file__)"
    code = (
        "import subprocess, sys\n"
        "from finsent.app.launch import python_command\n"
        f"sys.exit(subprocess.run(python_command('-c', {child!r})).returncode)\n"
    )
    result = run([venv / "bin" / "python", "-P", "-c", code], cwd, clean_env(venv))
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(result.stdout.strip()).is_relative_to(venv), result.stdout
