"""Device-use samples: rows written off the training loop, kept on resume, numbered on."""

from __future__ import annotations

from db.queries import delete_metrics_after, metric_rows
from db.session import make_engine
from engine.jobs.sysmon import CPU, MEMORY, SystemMonitor
from tests.dashboard.dash_helpers import add_metrics, add_run


def test_samples_are_stored_and_survive_a_resume(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run = add_run(db, status="running")
    monitor = SystemMonitor(db, run, interval_s=0.01)
    sum(i * i for i in range(200_000))  # some CPU time for the first reading
    monitor.record()
    monitor.record()
    rows = metric_rows(db, [run], [CPU, MEMORY])
    assert [(r["name"], r["step"]) for r in rows] == [(CPU, 0), (CPU, 1), (MEMORY, 0), (MEMORY, 1)]
    assert all(r["value"] >= 0 for r in rows) and rows[2]["value"] > 10  # a Python process holds > 10 MB
    add_metrics(db, run, "train/loss", [1.0, 0.9, 0.8])
    assert delete_metrics_after(db, run, 1) == 2  # the training rows after the checkpoint only
    assert len(metric_rows(db, [run], [CPU])) == 2
    resumed = SystemMonitor(db, run)
    resumed.record()
    assert [r["step"] for r in metric_rows(db, [run], [CPU])] == [0, 1, 2]


def test_the_thread_samples_and_stops(sqlite_url: str) -> None:
    import time

    db = make_engine(sqlite_url)
    run = add_run(db, status="running")
    monitor = SystemMonitor(db, run, interval_s=0.05)
    monitor.start()
    deadline = time.time() + 10
    while time.time() < deadline and len(metric_rows(db, [run], [CPU])) < 2:
        time.sleep(0.05)
    monitor.stop()
    monitor.join(5)
    assert not monitor.is_alive() and len(metric_rows(db, [run], [CPU])) >= 2


def test_gpu_readings_once_the_process_uses_cuda(monkeypatch) -> None:  # noqa: ANN001
    """No GPU here: torch.cuda's answers stand in for a device, to check what is read and how."""
    import torch

    from engine.jobs import sysmon

    assert sysmon.gpu_sample() == {} or torch.cuda.is_initialized()  # no CUDA touched: no GPU rows
    for name, value in (("is_available", lambda: True), ("is_initialized", lambda: True),
                        ("current_device", lambda: 0), ("memory_reserved", lambda d: 3 * 2**30),
                        ("utilization", lambda d: 87)):
        monkeypatch.setattr(torch.cuda, name, value)
    assert sysmon.gpu_sample() == {sysmon.GPU_MEMORY: 3072.0, sysmon.GPU_UTIL: 87.0}

    def no_nvml(device: int) -> int:
        raise ModuleNotFoundError("pynvml")

    monkeypatch.setattr(torch.cuda, "utilization", no_nvml)
    assert sysmon.gpu_sample() == {sysmon.GPU_MEMORY: 3072.0}  # memory still told without NVML
