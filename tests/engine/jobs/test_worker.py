"""The worker and the queue CLI: slots and devices, child processes, failures, signals, submit, cancel.

Runs here use the torch-free stand-in child (queue_support.py) so that process handling is tested
in seconds; tests/engine/jobs/test_queue_reliability.py covers the same paths with the real trainer.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.engine.jobs import queue_support
from db import queue
from db.config import RunConfig, run_dir
from db.identity import database_id
from db.queries import create_runs, get_run, list_runs, metric_rows
from db.migrate import SchemaError
from db.session import make_engine
from db.status import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING
from engine.jobs.cli import main
from engine.jobs.worker import Worker, device_problem, launch_env, max_devices, plan_slots, slots_for, visible_gpus
from tests.engine.jobs.queue_support import pid_alive, start_worker
from tests.support import wait_until


@pytest.fixture
def engine(sqlite_url: str):
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


def add_runs(engine, cfg: RunConfig, names: list[str | None], *, retries: int = 1) -> list[int]:
    return create_runs(engine, [cfg] * len(names), names=names, retries=retries)


def in_process_worker(url: str, *, slots: int = 1, log: list[str] | None = None, **kw) -> Worker:
    messages = log if log is not None else []
    return Worker(url, slots=plan_slots("cpu", slots, [], cores=6), poll_s=0.05, heartbeat_s=0.2,
                  exit_when_idle=True, command=queue_support.command, log=messages.append, **kw)


def no_unreaped_children() -> bool:
    """No zombie among this process's children: every run process the worker started was reaped."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            return False
    return True


# ------------------------------------------------------------------------------------ slots/devices
@pytest.mark.parametrize("cvd, expected", [("2,3", ["2", "3"]), ("", []), ("-1", []), ("0,-1,1", ["0"]),
                                           ("GPU-aa, GPU-bb", ["GPU-aa", "GPU-bb"])])
def test_visible_gpus_follows_cuda_visible_devices(cvd: str, expected: list[str]) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": cvd}) == expected


def test_visible_gpus_asks_nvidia_smi_by_uuid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aaa)'\n"
                    "echo '  MIG 1g.10gb Device 0: (UUID: MIG-xyz)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-bbb)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus({}) == ["GPU-aaa", "GPU-bbb"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert visible_gpus({}) == []  # no driver, no GPUs: not an error


def test_default_slots_one_per_gpu_with_its_own_cuda_visible_devices() -> None:
    slots = plan_slots(None, None, ["GPU-aaa", "GPU-bbb"], cores=16)
    assert [(s.device, s.env["CUDA_VISIBLE_DEVICES"], s.env["SIMCLR_NUM_THREADS"]) for s in slots] == [
        ("cuda:0", "GPU-aaa", "8"), ("cuda:1", "GPU-bbb", "8")]


def test_without_gpus_one_cpu_slot_that_hides_gpus() -> None:
    [slot] = plan_slots(None, None, [], cores=8)
    assert slot.device == "cpu" and slot.env == {"CUDA_VISIBLE_DEVICES": "", "SIMCLR_NUM_THREADS": "8"}


def test_cpu_slots_split_the_cores_and_gpu_slots_go_round_robin() -> None:
    assert [s.env["SIMCLR_NUM_THREADS"] for s in plan_slots("cpu", 4, [], cores=16)] == ["4"] * 4
    assert [s.env["SIMCLR_NUM_THREADS"] for s in plan_slots("cpu", 4, [], cores=2)] == ["1"] * 4
    assert [s.env["SIMCLR_NUM_THREADS"] for s in plan_slots("cpu", 2, [], cores=16, threads=3)] == ["3"] * 2
    assert [s.device for s in plan_slots("cuda:0,cuda:1", 4, ["0", "1"])] == ["cuda:0", "cuda:1"] * 2
    assert [s.device for s in plan_slots("cuda", None, ["0", "1"])] == ["cuda:0", "cuda:1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_slots("cuda:1", None, ["4", "5"])] == ["5"]


@pytest.mark.parametrize("devices, slots, words", [("cuda:2", None, "cuda:2 is not visible"),
                                                   ("tpu", None, "'tpu' is not cpu, cuda or cuda:N"),
                                                   ("cuda", None, "no device given"), ("cpu", 0, "at least 1")])
def test_bad_slot_plans(devices: str, slots: int | None, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        plan_slots(devices, slots, ["0", "1"] if devices != "cuda" else [])


# --------------------------------------------------------------------------------- child processes
def test_worker_runs_each_queued_run_in_its_own_process(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    ids = add_runs(engine, tiny_cfg, ["steps=3"] * 4)
    worker = in_process_worker(sqlite_url, slots=2)
    assert worker.run() == 0
    runs = [get_run(engine, i) for i in ids]
    assert [r["status"] for r in runs] == [COMPLETED] * 4
    assert len({r["pid"] for r in runs}) == 4 and os.getpid() not in {r["pid"] for r in runs}
    for r in runs:
        log = Path(r["log_path"]).read_text()
        assert Path(r["log_path"]) == Path(os.environ["SIMCLR_RUNS_DIR"]) / database_id(engine) / str(r["id"]) / "log.txt"
        assert f"=== attempt 1 of run {r['id']} on worker {worker.id}" in log and f"run {r['id']} completed" in log
        assert r["worker_id"] == worker.id and r["device"] == "cpu" and r["attempts"] == 1
        assert r["executor"] in {f"worker {worker.hostname}:{os.getpid()} slot {i} (cpu)" for i in (0, 1)}
    assert no_unreaped_children()
    [w] = [dict(row) for row in engine.connect().execute(text("SELECT * FROM workers")).mappings()]
    assert w["id"] == worker.id and w["slots"] == 2 and w["stopped_at"] is not None


def test_children_get_their_device_and_thread_share(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, ["env"])
    in_process_worker(sqlite_url, slots=2).run()
    assert "rank 0 of 1: CUDA_VISIBLE_DEVICES='' SIMCLR_NUM_THREADS='3'" in Path(get_run(engine, run_id)["log_path"]).read_text()


@pytest.mark.parametrize("nice", [None, 0, 5])
def test_run_processes_start_as_nice_as_asked(engine, sqlite_url: str, tiny_cfg: RunConfig,
                                                   nice: int | None) -> None:
    """--nice N: the dashboard and the shell get a core first while CPU runs fill the machine."""
    from engine.jobs.worker import RUN_NICE

    [run_id] = add_runs(engine, tiny_cfg, ["env"])
    in_process_worker(sqlite_url, **({} if nice is None else {"nice": nice})).run()
    expected = min(19, os.nice(0) + (RUN_NICE if nice is None else nice))
    assert f"nice={expected}" in Path(get_run(engine, run_id)["log_path"]).read_text()


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_nice_out_of_range_is_refused(sqlite_url: str, value: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "worker", "--devices", "cpu", "--nice", value, "--exit-when-idle"]) == 2
    assert f"--nice must be 0 (as the worker) to 19 (only idle cores), got {value}" in capsys.readouterr().err


def test_a_run_over_two_gpus_gets_two_different_free_gpus(engine, sqlite_url: str) -> None:
    two, one = RunConfig(dataset="synthetic", batch_size=16, devices=2), RunConfig(dataset="synthetic", batch_size=16)
    big, small = add_runs(engine, two, ["env steps=2"]) + add_runs(engine, one, ["env steps=2"])
    slots = plan_slots("cuda", None, ["GPU-a", "GPU-b", "GPU-c"], cores=6)
    worker = Worker(sqlite_url, slots=slots, poll_s=0.05, heartbeat_s=0.2, exit_when_idle=True,
                    command=queue_support.command, log=lambda m: None)
    assert worker.run() == 0
    big_run, small_run = get_run(engine, big), get_run(engine, small)
    assert big_run["status"] == small_run["status"] == COMPLETED
    assert big_run["device"] == "cuda:0,cuda:1" and small_run["device"] == "cuda:2"
    log = Path(big_run["log_path"]).read_text()
    for rank in (0, 1):  # torchrun started both processes, each seeing both GPUs (it takes its local rank's)
        assert f"rank {rank} of 2: CUDA_VISIBLE_DEVICES='GPU-a,GPU-b' SIMCLR_NUM_THREADS='2'" in log
    assert "rank 0 of 1: CUDA_VISIBLE_DEVICES='GPU-c'" in Path(small_run["log_path"]).read_text()


def test_multi_device_runs_take_distinct_free_gpus_or_share_a_cpu_slot() -> None:
    gpus = plan_slots("cuda", 4, ["a", "b"], cores=8)  # two slots on each of two GPUs
    assert max_devices(gpus) == 2 and [s.index for s in slots_for(2, gpus)] == [0, 1]
    assert slots_for(2, [gpus[0], gpus[2]]) is None  # two free slots, but both on cuda:0
    assert max_devices([gpus[0], gpus[2]]) == 1
    assert slots_for(1, [gpus[3]]) == [gpus[3]]
    [cpu] = plan_slots("cpu", 1, [], cores=8)
    assert max_devices([cpu]) is None and slots_for(4, [cpu]) == [cpu]  # its 4 processes share its cores
    assert launch_env([cpu], 4) == {"CUDA_VISIBLE_DEVICES": "", "SIMCLR_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    assert launch_env([gpus[0], gpus[1]], 2)["CUDA_VISIBLE_DEVICES"] == "a,b"
    assert launch_env([gpus[1]], 1) == gpus[1].env


def test_worker_survives_crashing_runs_and_says_why_they_failed(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    crash, ok = add_runs(engine, tiny_cfg, ["exit=3", "steps=2"], retries=1)
    log: list[str] = []
    assert in_process_worker(sqlite_url, log=log).run() == 0
    run = get_run(engine, crash)
    assert run["status"] == FAILED and run["attempts"] == 2
    assert run["error"] == "run process exited with code 3 without recording a result (gave up after 2 attempts)"
    text_ = Path(run["log_path"]).read_text()
    assert "=== attempt 1" in text_ and "=== attempt 2" in text_ and "requeued to resume" in text_
    assert get_run(engine, ok)["status"] == COMPLETED
    assert any("requeued" in m for m in log)


def test_a_run_that_cannot_start_is_failed_not_fatal(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, [None], retries=0)
    worker = in_process_worker(sqlite_url)
    worker.command = lambda rid, attempt: ["/nonexistent/python", str(rid)]
    assert worker.run() == 0
    run = get_run(engine, run_id)
    assert run["status"] == FAILED and run["error"].startswith("could not start the run process")


def test_a_run_that_ignores_cancel_is_killed_after_the_grace_period(engine, sqlite_url: str,
                                                                    tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, ["hang"])
    worker = in_process_worker(sqlite_url, cancel_grace_s=0.5)
    threading.Thread(target=lambda: (wait_until(lambda: get_run(engine, run_id)["pid"], 30, "the run to start"),
                                     queue.request_cancel(engine, run_id)), daemon=True).start()
    t0 = time.monotonic()
    worker.run()
    run = get_run(engine, run_id)
    assert run["status"] == CANCELLED and "did not stop after a cancel request" in run["error"]
    assert time.monotonic() - t0 < 30 and not pid_alive(run["pid"])


def test_a_run_taken_over_by_another_worker_is_killed_here(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, ["hang"], retries=2)
    log: list[str] = []
    worker = in_process_worker(sqlite_url, log=log)

    def take_over() -> None:
        wait_until(lambda: get_run(engine, run_id)["pid"], 30, "the run to start")
        # What another worker does when this one looks dead: requeue, then claim.
        queue.finish_attempt(engine, run_id, worker.id, 1, None, reason="simulated loss")
        queue.claim_next(engine, "other-worker", "cpu")
        wait_until(lambda: any("taken over" in m for m in log), 30, "the worker to notice")
        worker.request_stop()

    threading.Thread(target=take_over, daemon=True).start()
    worker.run()
    run = get_run(engine, run_id)
    assert run["status"] == RUNNING and run["worker_id"] == "other-worker"  # untouched by the loser
    assert no_unreaped_children()


# ------------------------------------------------------------------------------- signals and kills
def test_first_sigterm_drains_running_runs_and_claims_no_more(engine, sqlite_url: str, tiny_cfg: RunConfig,
                                                              tmp_path: Path) -> None:
    first, second = add_runs(engine, tiny_cfg, ["steps=30", "steps=30"])
    proc = start_worker(sqlite_url, "--poll", "0.1", stand_in=True, log_path=tmp_path / "worker.log",
                        env={"STAND_IN_STEP_S": "0.1"})
    wait_until(lambda: get_run(engine, first)["step"] >= 2, 60, "the first run to make progress")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert get_run(engine, first)["status"] == COMPLETED  # finished, not cut short
    assert get_run(engine, second)["status"] == QUEUED
    assert "draining" in (tmp_path / "worker.log").read_text()


def test_second_sigterm_stops_now_and_requeues_without_charging_a_retry(engine, sqlite_url: str,
                                                                         tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, ["hang"], retries=0)
    proc = start_worker(sqlite_url, "--poll", "0.1", stand_in=True)
    pid = wait_until(lambda: get_run(engine, run_id)["pid"], 60, "the run to start")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    run = get_run(engine, run_id)
    assert run["status"] == QUEUED and run["retries_left"] == 0 and run["worker_id"] is None
    wait_until(lambda: not pid_alive(pid), 10, "the run process to be gone")


def test_kill_9_worker_takes_its_runs_down_and_a_restart_recovers_them(engine, sqlite_url: str,
                                                                       tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, ["steps=40"])
    env = {"STAND_IN_STEP_S": "0.05", "SIMCLR_HEARTBEAT_S": "0.5"}  # --stale-after 2 needs beats this fast
    proc = start_worker(sqlite_url, "--poll", "0.1", "--stale-after", "2", stand_in=True, env=env)
    wait_until(lambda: get_run(engine, run_id)["step"] >= 5, 60, "the run to make progress")
    pid = get_run(engine, run_id)["pid"]
    proc.kill()
    proc.wait()
    # PR_SET_PDEATHSIG: the run process dies with its worker instead of running on unaccounted for.
    wait_until(lambda: not pid_alive(pid), 10, "the orphaned run process to die")
    assert get_run(engine, run_id)["status"] == RUNNING  # nobody knows yet
    again = start_worker(sqlite_url, "--poll", "0.1", "--stale-after", "2", "--exit-when-idle", stand_in=True, env=env)
    assert again.wait(120) == 0
    run = get_run(engine, run_id)
    assert run["status"] == COMPLETED and run["attempts"] == 2 and run["retries_left"] == 0
    steps = [r["step"] for r in metric_rows(engine, [run_id], ["train/loss"])]
    assert steps == list(range(1, 41))


# ------------------------------------------------------------------------------------------- CLI
def tiny_flags(cfg: RunConfig) -> list[str]:
    return ["--dataset", cfg.dataset, "--image-size", str(cfg.image_size), "--subset-size", "64",
            "--epochs", "1", "--stem", cfg.stem]


def test_submit_one_run(engine, sqlite_url: str, tiny_cfg: RunConfig, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--batch-size", "32", "--name", "one",
                 "--retries", "3"]) == 0
    [run] = list_runs(engine)
    out, err = capsys.readouterr()
    assert f"queued run {run['id']}" in out
    assert "no worker is alive" in err and "python -m engine worker --detach" in err
    assert (run["status"], run["name"], run["batch_size"], run["retries_left"], run["sweep_id"]) == \
        (QUEUED, "one", 32, 3, None)


def test_submit_says_when_no_live_worker_has_enough_gpus(engine, sqlite_url: str, tiny_cfg: RunConfig,
                                                        capsys: pytest.CaptureFixture) -> None:
    queue.register_worker(engine, "gpu-box", hostname="h", pid=1, slots=2, devices="cuda:0,cuda:1")
    assert main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--batch-size", "32", "--devices", "4"]) == 0
    [run] = list_runs(engine)
    err = capsys.readouterr().err
    assert f"warning: run {run['id']} asks for more GPUs than any live worker has (at most 2 each)" in err, err
    assert main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--batch-size", "32", "--devices", "2"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_submit_grid_enqueues_the_product_as_one_sweep(engine, sqlite_url: str, tiny_cfg: RunConfig,
                                                       capsys: pytest.CaptureFixture) -> None:
    queue.register_worker(engine, "box:7:0", hostname="box", pid=7, slots=1, devices="cpu")
    assert main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--grid", "batch_size=16,32",
                 "--grid", "seed=0,1,2"]) == 0
    out = capsys.readouterr().out
    runs = sorted(list_runs(engine), key=lambda r: r["id"])
    assert len(runs) == 6 and len({r["sweep_id"] for r in runs}) == 1
    assert f"queued sweep {runs[0]['sweep_id']}: 6 runs" in out
    assert "1 worker alive (pid 7 on box): they will run when a slot is free" in out
    assert f"run {runs[-1]['id']}  batch_size=32 seed=2" in out
    assert [(r["batch_size"], r["config"]["seed"]) for r in runs] == [(b, s) for b in (16, 32) for s in (0, 1, 2)]


def test_submit_with_one_bad_combination_enqueues_nothing(engine, sqlite_url: str, tiny_cfg: RunConfig,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--grid", "batch_size=16,128"]) == 2
    err = capsys.readouterr().err
    assert "batch_size=128: subset_size: must be at least one batch (128 images); got 64 (flag --subset-size)" in err
    assert list_runs(engine) == []


def test_cancel_cli(engine, sqlite_url: str, tiny_cfg: RunConfig, capsys: pytest.CaptureFixture) -> None:
    a, b, c = add_runs(engine, tiny_cfg, [None, None, None])
    queue.claim_next(engine, "w", "cpu")  # a is running
    assert main(["--db", sqlite_url, "cancel", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"run {a} will stop within seconds" in out and f"run {b} cancelled (it was queued)" in out
    assert main(["--db", sqlite_url, "cancel", "999"]) == 1
    assert "no run with id 999" in capsys.readouterr().err
    assert get_run(engine, c)["status"] == QUEUED


def test_cancel_a_sweep(engine, sqlite_url: str, tiny_cfg: RunConfig, capsys: pytest.CaptureFixture) -> None:
    main(["--db", sqlite_url, "submit", *tiny_flags(tiny_cfg), "--grid", "batch_size=16,32"])
    sweep = list_runs(engine)[0]["sweep_id"]
    assert main(["--db", sqlite_url, "cancel", "--sweep", sweep]) == 0
    assert {r["status"] for r in list_runs(engine)} == {CANCELLED}


def test_worker_refuses_an_outdated_schema(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    eng = make_engine(sqlite_url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    eng.dispose()
    with pytest.raises(SchemaError):
        Worker(sqlite_url, slots=plan_slots("cpu", 1, []))
    assert main(["--db", sqlite_url, "worker", "--devices", "cpu", "--exit-when-idle"]) == 2
    assert "python -m engine db upgrade" in capsys.readouterr().err


def test_worker_cli_rejects_a_bad_device(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "worker", "--devices", "cuda:7"]) == 2
    assert "cuda:7 is not visible" in capsys.readouterr().err


def test_the_stand_in_speaks_the_same_protocol_as_the_real_child() -> None:
    # Guard against the stand-in drifting from the real command line shape.
    from engine.jobs.worker import execute_command

    assert execute_command(5, 2) == [sys.executable, "-m", "engine", "execute", "5", "--attempt", "2"]
    assert queue_support.command(5, 2)[-4:] == ["run", "5", "--attempt", "2"]


@pytest.mark.parametrize("value", ["0", "nan", "-5", "inf", "1"])
def test_stale_after_below_a_few_heartbeats_is_refused(sqlite_url: str, value: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    # `--stale-after 0` once requeued and failed a healthy run of another worker within a second.
    assert main(["--db", sqlite_url, "worker", "--devices", "cpu", "--stale-after", value, "--exit-when-idle"]) == 2
    err = capsys.readouterr().err
    assert "--stale-after must be a number of seconds >= 15 (3 heartbeats of 5 s)" in err and value in err


def test_a_refused_stale_after_touches_no_run(engine, sqlite_url: str, tiny_cfg: RunConfig) -> None:
    [run_id] = add_runs(engine, tiny_cfg, [None])
    queue.claim_next(engine, "other-worker", "cpu")
    with pytest.raises(ValueError, match="--stale-after"):
        Worker(sqlite_url, slots=plan_slots("cpu", 1, []), stale_after_s=0.0)
    run = get_run(engine, run_id)
    assert run["status"] == RUNNING and run["worker_id"] == "other-worker"


def test_a_worker_stores_its_stale_after(engine, sqlite_url: str) -> None:
    worker = Worker(sqlite_url, slots=plan_slots("cpu", 1, []), stale_after_s=300.0, exit_when_idle=True,
                    log=lambda m: None)
    assert worker.run() == 0
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT stale_after_s FROM workers WHERE id = :id"), {"id": worker.id}).scalar()
    assert stored == 300.0


def test_delete_cli(engine, sqlite_url: str, tiny_cfg: RunConfig, capsys: pytest.CaptureFixture) -> None:
    a, b = add_runs(engine, tiny_cfg, [None, None])
    queue.claim_next(engine, "w", "cpu")  # a: running, heartbeat fresh
    folder = run_dir(b, database_id(engine))
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("log")
    assert main(["--db", sqlite_url, "delete", str(a), str(b), "999"]) == 1
    out = capsys.readouterr().out
    assert f"run {a} is running: cancel it first" in out and "run 999 does not exist" in out
    assert f"deleted run {b} with metrics, log and checkpoints" in out
    assert get_run(engine, b) is None and not folder.exists() and get_run(engine, a)["status"] == RUNNING
    queue.request_cancel(engine, a)
    queue.finish_attempt(engine, a, "w", 1, -9)  # its process died: cancelled
    assert main(["--db", sqlite_url, "delete", str(a)]) == 0
    assert get_run(engine, a) is None


# ------------------------------------------------------------------------------ database identity
def test_a_database_deleted_under_a_worker_stops_it_and_its_runs(sqlite_url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAND_IN_STEP_S", "0.05")
    engine = make_engine(sqlite_url)
    run_id = add_runs(engine, RunConfig(), ["steps=2000"])[0]
    messages: list[str] = []
    worker = in_process_worker(sqlite_url, log=messages)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    wait_until(lambda: worker.jobs and get_run(engine, run_id)["step"] > 0, 60, "the run to start")
    child = worker.jobs[0].proc
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'runs.db'}{suffix}").unlink(missing_ok=True)
    make_engine(sqlite_url).dispose()  # a new, empty database where the old one was
    thread.join(30)
    assert result == [3]
    assert child.poll() is not None  # its run process was stopped too
    assert any("was replaced by another file" in m or "deleted or moved away" in m for m in messages)
    assert list_runs(make_engine(sqlite_url)) == []  # and nothing was written to the new database


def test_a_run_process_refuses_a_database_that_is_not_its_workers(sqlite_url: str, capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(sqlite_url)
    run_id = add_runs(engine, RunConfig(), [None])[0]
    assert queue.claim_next(engine, "w", "cpu")["id"] == run_id
    monkeypatch.setenv("SIMCLR_DB_ID", "f" * 32)
    assert main(["--db", sqlite_url, "execute", str(run_id), "--attempt", "1"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"not {'f' * 32}" in err
    assert get_run(engine, run_id)["status"] == RUNNING  # untouched: it is not this process's database


def test_run_summary_of_a_vanished_run_is_a_sentence() -> None:
    from engine.jobs.runner import run_summary_line

    assert run_summary_line(None, 7) == "run 7 no longer exists in this database"


def test_a_run_needing_a_device_the_worker_lacks_is_given_back_with_a_message(engine) -> None:
    gpu_run, cpu_run = create_runs(engine, [RunConfig(device="cuda", batch_size=64), RunConfig(batch_size=64)])
    worker = in_process_worker(engine.url.render_as_string(hide_password=False))
    worker._fill_slots()
    gpu = get_run(engine, gpu_run)
    assert gpu["status"] == QUEUED and gpu["attempts"] == 0 and "has no GPU" in gpu["error"]
    assert get_run(engine, cpu_run)["status"] == RUNNING  # the worker went on to the run it can do
    assert worker.slots[0].job is not None and worker.slots[0].job.run_id == cpu_run
    worker.slots[0].job.proc.wait()
    assert device_problem("cuda:1", "cuda:0") and device_problem("cuda", "cuda:0") is None
    assert device_problem("mps", "cpu") and device_problem("auto", "cpu") is None
