"""The import-linter layers contract catches an upward import: `lint-imports` is run on a copy of
the package (with the project's own contract) before and after `core` is made to import `app`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # installed beside this Python
UPWARD = "import finsent.app.cli  # upward\n"


def _only_sources(folder: str, names: list[str]) -> set[str]:
    """copytree filter: keep folders and .py files (no caches, no model artifacts)."""
    return {
        n
        for n in names
        if n == "__pycache__" or not (n.endswith(".py") or Path(folder, n).is_dir())
    }


def lint_copy(tmp_path: Path, *, upward: bool) -> subprocess.CompletedProcess[str]:
    """Run lint-imports over a copy of finsent/ in `tmp_path`, optionally with one upward import."""
    shutil.copytree(ROOT / "finsent", tmp_path / "finsent", ignore=_only_sources)
    shutil.copy(CONFIG, tmp_path / "pyproject.toml")
    if upward:
        records = tmp_path / "finsent" / "core" / "records.py"
        records.write_text(records.read_text(encoding="utf-8") + UPWARD, encoding="utf-8")
    # The copy comes first on the path, ahead of the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "300"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "pyproject.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def contract_names() -> list[str]:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr with every run of whitespace as one space (rich wraps long lines)."""
    return " ".join((result.stdout + result.stderr).split())


def test_the_package_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path, upward=False)
    assert result.returncode == 0, flat(result)
    names = contract_names()
    assert f"Contracts: {len(names)} kept, 0 broken." in flat(result)


def test_an_upward_import_from_core_breaks_the_layers_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path, upward=True)
    output = flat(result)
    assert result.returncode != 0, output
    layers = next(n for n in contract_names() if n.startswith("One-way layers"))
    assert f"{layers} BROKEN" in output
    assert "finsent.core.records -> finsent.app.cli" in output
