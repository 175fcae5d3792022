"""Light workers must not pay for heavy extras: the stage modules import neither torch nor streamlit."""

from __future__ import annotations

import subprocess
import sys


def test_stage_modules_do_not_import_heavy_extras() -> None:
    code = (
        "import sys\n"
        "import finsent.app.cli, finsent.app.demo, finsent.ingest.replay, finsent.stream.scoring, finsent.stream.aggregation, finsent.alerts.alerter, finsent.alerts.notifier, finsent.app.stages\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'tokenizers', 'streamlit', 'plotly', 'pandas') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
