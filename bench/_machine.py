"""The machine a benchmark ran on, printed beside its figures: CPU model, vector flags, cores.

Every script in bench/ prints ``machine_line()`` in its header (and would put ``machine()`` in
any JSON it writes). Read from /proc/cpuinfo on Linux; elsewhere the model comes from
``platform`` and the flags are unknown (None, printed as "?").

    .venv/bin/python bench/_machine.py        # the line, then the JSON
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

# The flags that decide how fast the int8 and fp32 kernels run, as /proc/cpuinfo names them.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields (model name, flags, ...); empty where there is no such file."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: the others repeat it
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, vector flags (True/False, None if unknown), logical and usable cores."""
    info = _cpuinfo(cpuinfo)
    model = (
        info.get("model name")
        or info.get("Model")  # some ARM kernels
        or info.get("Hardware")
        or platform.processor()
        or platform.machine()
        or "unknown"
    )
    # x86 says "flags", ARM says "Features"; no such line: the flags are unknown.
    present = info.get("flags", info.get("Features"))
    have = set(present.split()) if present is not None else None
    flags = {f: (None if have is None else f in have) for f in VECTOR_FLAGS}
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu_model": model,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "flags": flags,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line: ``machine: <model> (x86_64), 16 cores (16 usable); avx2 yes, ... amx no``."""
    info = info or machine()
    flags = info["flags"]

    def say(value: bool | None) -> str:
        return "?" if value is None else ("yes" if value else "no")

    amx = [f.removeprefix("amx_") for f in ("amx_tile", "amx_int8", "amx_bf16") if flags[f]]
    if any(flags[f] is None for f in ("amx_tile", "amx_int8", "amx_bf16")):
        amx_text = "?"
    else:
        amx_text = "/".join(amx) if amx else "no"
    vector = ", ".join(f"{f} {say(flags[f])}" for f in ("avx2", "avx512f", "avx512_vnni"))
    return (
        f"machine: {info['cpu_model']} ({info['arch']}), {info['cores']} cores "
        f"({info['usable_cores']} usable); {vector}, amx {amx_text}"
    )


if __name__ == "__main__":
    print(machine_line())
    print(json.dumps(machine(), indent=2))
