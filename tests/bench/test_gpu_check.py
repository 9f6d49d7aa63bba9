"""bench/gpu_check.py --quick: the GPU check's every section, on a CPU with tiny data, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db.config import PROJECT_ROOT

SECTIONS = ("data", "tests", "speed", "sync", "augment", "logging", "memory", "knn", "train10")


@pytest.mark.slow
def test_quick_run_fills_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", str(tmp_path / "out"), "--quick"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    rows = result["rows"]
    assert result["mode"] == "quick (CPU)" and [s for s in SECTIONS if not any(r["section"] == s for r in rows)] == []
    assert not [r for r in rows if r["what"] in ("ERROR", "TIMED OUT") or r["ok"] is False], proc.stdout[-3000:]
    figures = {r["what"]: r["value"] for r in rows}
    assert figures["(a) engine step, resnet18 eager"] > 0
    assert figures["(b) model-only ceiling, resnet18 channels_last"] > 0
    assert 0 < figures["kNN monitor in all"] and 0 <= figures["top-1 of an untrained encoder"] <= 1
    assert len(figures["kNN top-1 by epoch"].split()) == 1
    markdown = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| speed | a/b, resnet18 eager |" in markdown
    assert "a/b, resnet18 eager" in proc.stdout  # the printed table
