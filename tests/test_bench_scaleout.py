"""bench/bench_scaleout.py's pure helpers: its options and its table (the benchmark itself needs
a broker and minutes, and is not run here)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


_load("_machine")  # imported by the script as bench/ siblings import each other
sc = _load("bench_scaleout")


def test_procs_are_counts_of_one_or_more_in_the_order_given() -> None:
    assert sc.parse_procs("1,2,4") == (1, 2, 4)
    assert sc.parse_procs("4, 1") == (4, 1)
    for bad in ("", "0,1", "one", "1,-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            sc.parse_procs(bad)


def test_cpus_take_a_taskset_list_of_the_machines_cpus() -> None:
    assert sc.parse_cpus("3", cores=16) == (3,)
    assert sc.parse_cpus("0-3,8,10-11", cores=16) == (0, 1, 2, 3, 8, 10, 11)
    assert sc.parse_cpus("2,0-1", cores=16) == (0, 1, 2)
    for bad in ("", "a-b", "3-1", "-1", "0-", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="taskset list"):
            sc.parse_cpus(bad, cores=16)
    with pytest.raises(argparse.ArgumentTypeError, match="has CPUs 0-15"):
        sc.parse_cpus("12-16", cores=16)


def test_throughput_is_records_over_the_span() -> None:
    assert sc.throughput(5000, 10.0, 12.5) == pytest.approx(2000.0)
    assert sc.throughput(10, 3.0, 3.0) == pytest.approx(10_000.0)  # floored at 1 ms


def test_table_gives_medians_and_ratios_to_the_fewest_processes() -> None:
    runs = [
        sc.Run(procs=1, count=1000, seconds=4.0, cpu=(3.8,)),
        sc.Run(procs=1, count=1000, seconds=5.0, cpu=(4.0,)),
        sc.Run(procs=1, count=1000, seconds=6.0, cpu=(4.2,)),
        sc.Run(procs=2, count=1000, seconds=2.5, cpu=(2.0, 2.2)),
    ]
    header, one, two = sc.table(runs, "points")
    assert header.split() == [
        "processes",
        "points/s",
        "x",
        "of",
        "1",
        "CPU",
        "s/proc",
        "CPU",
        "s",
        "all",
    ]
    assert one.split() == ["1", "200", "1.00", "4.0", "4.0"]  # the median of 250, 200, 167
    assert two.split() == ["2", "400", "2.00", "2.1", "4.2"]
