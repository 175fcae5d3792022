"""tests/ mirrors the package file by file: tests/<sub>/test_<mod>.py tests finsent/<sub>/<mod>.py
(or the package finsent/<sub>/<mod>/). Tests of a cross-cutting flow (the whole pipeline, the
installed package, the layers, the locks…) sit at the top of tests/; shared helpers live in
tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGE = ROOT / "finsent"
HELPERS = {"support"}  # test helpers, importable as support.*: nothing to mirror
# Files a mirrored test folder may hold besides tests: pytest's, and nothing else.
NOT_TESTS = {"conftest.py", "__init__.py"}
# Test files under tests/<sub>/ that mirror no module, and why.
EXCEPTIONS = {
    "dashboard/test_browser.py": "every page of the served dashboard in a real browser",
}


def mirrored_folders() -> Iterator[Path]:
    for path in sorted(TESTS.rglob("*")):
        rel = path.relative_to(TESTS)
        caches = any(part == "__pycache__" or part.startswith(".") for part in rel.parts)
        if path.is_dir() and rel.parts[0] not in HELPERS and not caches:
            yield rel


def mirrored_test_files() -> Iterator[Path]:
    for folder in mirrored_folders():
        yield from (p.relative_to(TESTS) for p in sorted((TESTS / folder).glob("test_*.py")))


def mirrors(test_file: Path) -> bool:
    """Whether a module or package of the test file's name is where the test file is."""
    module = PACKAGE / test_file.parent / test_file.name.removeprefix("test_")
    return module.is_file() or (module.with_suffix("") / "__init__.py").is_file()


def test_every_test_file_mirrors_a_module() -> None:
    orphans = [
        rel.as_posix()
        for rel in mirrored_test_files()
        if not mirrors(rel) and rel.as_posix() not in EXCEPTIONS
    ]

    assert orphans == [], "move or merge them into tests/<sub>/test_<module>.py, or to tests/"


def test_every_test_folder_mirrors_a_package() -> None:
    assert [
        rel.as_posix()
        for rel in mirrored_folders()
        if not (PACKAGE / rel / "__init__.py").is_file()
    ] == []


def test_mirrored_folders_hold_only_tests() -> None:
    """A helper module beside the tests belongs in tests/support/, where every test sees it."""
    strays = [
        path.relative_to(TESTS).as_posix()
        for folder in mirrored_folders()
        for path in sorted((TESTS / folder).glob("*.py"))
        if not path.name.startswith("test_") and path.name not in NOT_TESTS
    ]

    assert strays == []


def test_the_exceptions_are_still_exceptions() -> None:
    for rel in EXCEPTIONS:
        assert (TESTS / rel).is_file(), f"{rel} is gone: drop it from EXCEPTIONS"
        assert not mirrors(Path(rel)), f"{rel} mirrors a module now: drop it from EXCEPTIONS"


def test_the_check_sees_the_tree() -> None:
    found = {rel.as_posix() for rel in mirrored_test_files()}

    assert "stream/test_aggregation.py" in found and "runtime/store/test_offsets.py" in found
    assert mirrors(Path("runtime/store/test_offsets.py"))
    assert mirrors(Path("ingest/test_dedup.py"))  # a package: finsent/ingest/dedup/
    assert not mirrors(Path("stream/test_aggregator_faults.py"))
