"""Model versions for registry tests: the shipped artifact under another version name, without
training one. ``read_artifact`` checks the config, the backbone's hash and the ONNX graph's
hash, so a copy of the shipped config with only its version changed, beside a link to the
shipped graph, is a valid artifact."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from finsent.model.artifact import ONNX_MODEL, SHIPPED_ARTIFACT
from finsent.model.registry import ModelRegistry

SHIPPED_VERSION = json.loads((SHIPPED_ARTIFACT / "config.json").read_text(encoding="utf-8"))[
    "version"
]


def fake_artifact(folder: Path, version: str) -> Path:
    """An artifact folder ``folder`` that reads as version ``version``."""
    folder.mkdir(parents=True)
    config = json.loads((SHIPPED_ARTIFACT / "config.json").read_text(encoding="utf-8"))
    config["version"] = version
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / ONNX_MODEL).symlink_to(SHIPPED_ARTIFACT / ONNX_MODEL)  # 11 MB: linked, not copied
    return folder


def register_fake(
    registry: ModelRegistry,
    workdir: Path,
    version: str,
    *,
    now: datetime,
    status: str = "passed",
    report: dict[str, Any] | None = None,
) -> str:
    """Register a fake artifact of ``version`` as ``finsent retrain`` would, fine-tuned from
    the shipped model on 12 corrections."""
    return registry.register(
        fake_artifact(workdir / version, version),
        parent=SHIPPED_VERSION,
        corrections=12,
        status=status,
        report={"passed": status != "refused", "reasons": []} if report is None else report,
        now=now,
    )
