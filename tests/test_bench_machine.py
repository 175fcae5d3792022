"""bench/_machine.py: the CPU model, vector flags and cores every benchmark prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("_machine", ROOT / "bench" / "_machine.py")
assert spec is not None and spec.loader is not None
machine_mod = importlib.util.module_from_spec(spec)
sys.modules.setdefault("_machine", machine_mod)
spec.loader.exec_module(machine_mod)

SAPPHIRE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""


def test_reads_the_model_and_flags_of_the_first_processor(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(SAPPHIRE)
    info = machine_mod.machine(path)
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert all(info["flags"].values()), info["flags"]
    assert info["cores"] and info["usable_cores"]
    line = machine_mod.machine_line(info)
    assert "Intel(R) Xeon(R) Platinum 8480+" in line
    assert "avx2 yes, avx512f yes, avx512_vnni yes, amx tile/int8/bf16" in line


def test_missing_flags_are_reported_as_no_or_unknown(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx\n")
    line = machine_mod.machine_line(machine_mod.machine(path))
    assert "avx2 no, avx512f no, avx512_vnni no, amx no" in line
    unknown = machine_mod.machine(tmp_path / "absent")
    assert set(unknown["flags"].values()) == {None} and unknown["cpu_model"]
    assert "avx2 ?" in machine_mod.machine_line(unknown)


def test_every_benchmark_prints_the_machine_line() -> None:
    for path in sorted((ROOT / "bench").glob("bench_*.py")):
        text = path.read_text(encoding="utf-8")
        assert "from _machine import machine_line" in text, path.name
        assert "print(machine_line()" in text, path.name
