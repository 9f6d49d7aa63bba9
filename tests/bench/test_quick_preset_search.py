"""bench/quick_preset_search.py on one tiny trial, so the search behind the quick preset cannot rot
(it did once: a changed run_dir() signature broke it unnoticed until the next search)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from db.config import PROJECT_ROOT


def test_one_tiny_trial_reports_its_lift(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "SIMCLR_RUNS_DIR": str(tmp_path / "runs")}
    trial = ("dataset=synthetic subset_size=64 image_size=16 stem=imagenet projection_dim=16 optimizer=adam "
             "lr=1e-3 batch_size=32 epochs=2 eval_every=1 knn_k=10")
    out = tmp_path / "search.jsonl"
    proc = subprocess.run([sys.executable, "bench/quick_preset_search.py", "--threads", "1", "--out", str(out),
                           trial], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["finished"] and result["epochs_done"] == 2
    assert [epoch for epoch, *_ in result["curve"]] == [1, 2]
    assert 0 <= result["random_knn"] <= 1 and result["lift"] == result["knn"] - result["random_knn"]
    assert "=> lift" in proc.stdout
