"""The Ray dispatcher (engine/jobs/ray_dispatch.py).

Two halves. The first drives the dispatcher against an in-memory stand-in for Ray, to reach the
moments a real cluster makes hard to hit on purpose: a dispatcher that dies between claiming a run
and submitting its job, or between submitting and recording it; a job Ray forgets; a cancel that
the run ignores. The second runs real tiny runs as real Ray jobs on a local Ray head
(tests/engine/jobs/conftest.py) against PostgreSQL: a sweep with a dispatcher killed and restarted
in the middle, GPU requests and CUDA_VISIBLE_DEVICES, a cancel, and a killed job process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from db import executor, queue
from db.config import RunConfig
from db.queries import create_runs, get_run, list_runs, metric_rows
from db.session import make_engine
from db.status import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING
from engine.jobs.ray_dispatch import (
    DispatchError, Dispatcher, JobView, RayJobs, gpus_for, job_entrypoint, job_env, submission_id,
)
from tests.conftest import tiny_config
from tests.engine.jobs.queue_support import ROOT
from tests.support import wait_until


# ----------------------------------------------------------------------------- a stand-in for Ray
class FakeJobs:
    """Ray's job table in memory. Tests move jobs between states by hand."""

    address = "http://fake-ray:8265"

    def __init__(self, gpus_per_node: list[int] | None = None):
        self.jobs: dict[str, JobView] = {}
        self.submitted: list[dict[str, Any]] = []  # every accepted submission, in order
        self.stopped: list[str] = []
        self.nodes = [2] if gpus_per_node is None else gpus_per_node

    def submit(self, sid: str, entrypoint: str, *, num_gpus: int, num_cpus: int, env: dict[str, str]) -> bool:
        if sid in self.jobs:
            return False
        self.jobs[sid] = JobView("PENDING", "", None)
        self.submitted.append(dict(sid=sid, entrypoint=entrypoint, num_gpus=num_gpus, num_cpus=num_cpus, env=env))
        return True

    def info(self, sid: str) -> JobView | None:
        return self.jobs.get(sid)

    def stop(self, sid: str) -> None:
        self.stopped.append(sid)

    def logs(self, sid: str) -> str:
        return f"output of {sid}\n"

    def gpus_per_node(self) -> list[int]:
        return self.nodes

    def pending(self) -> list[str]:
        return [sid for sid, job in self.jobs.items() if job.status == "PENDING"]

    def set(self, sid: str, status: str, message: str = "", node: str | None = "10.0.0.7") -> None:
        self.jobs[sid] = JobView(status, message, node)


def dispatcher(url: str, jobs: FakeJobs, **kw: Any) -> Dispatcher:
    kw = {"poll_s": 0.01, "heartbeat_s": 0.0, "dashboard": "http://head:8265", **kw}
    return Dispatcher(url, jobs, **kw)


def claim_of(engine, run_id: int) -> str:  # noqa: ANN001
    return get_run(engine, run_id)["worker_id"]


def test_job_request_follows_the_run_device() -> None:
    assert gpus_for(tiny_config(device="cpu"), cluster_has_gpus=True) == 0
    assert gpus_for(tiny_config(device="auto"), cluster_has_gpus=True) == 1
    assert gpus_for(tiny_config(device="auto"), cluster_has_gpus=False) == 0
    assert gpus_for(tiny_config(device="cuda"), cluster_has_gpus=False) == 1
    assert gpus_for(tiny_config(device="auto", devices=2, batch_size=32), cluster_has_gpus=True) == 2
    assert job_entrypoint(7, 2, tiny_config()) == "python -m engine execute 7 --attempt 2"
    assert job_entrypoint(7, 2, tiny_config(devices=2)) == ("python -m torch.distributed.run --standalone "
                                                            "--nproc-per-node=2 --max-restarts=0 -m engine execute 7 "
                                                            "--attempt 2")
    assert job_env("sqlite:///x.db", "ray:x", gpus=2, cpus=4, processes=2)["SIMCLR_NUM_THREADS"] == "2"
    env = job_env("postgresql+psycopg://u:pw@db/simclr", "ray:x", gpus=0, cpus=3)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["SIMCLR_NUM_THREADS"] == "3"
    assert env["SIMCLR_DB"].endswith("@db/simclr") and env["SIMCLR_CLAIM"] == "ray:x"
    assert Path(env["SIMCLR_RUNS_DIR"]).is_absolute()
    assert "CUDA_VISIBLE_DEVICES" not in job_env("sqlite:///x.db", "ray:x", gpus=1, cpus=1)  # Ray assigns it
    assert job_env("sqlite:///x.db", "ray:x", gpus=1, cpus=1)["SIMCLR_DB"] == f"sqlite:///{Path.cwd() / 'x.db'}"


def test_submission_ids_name_run_and_attempt_and_differ_between_databases(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_config()])
    run = {**get_run(engine, run_id), "attempts": 2}
    sid = submission_id(sqlite_url, run)
    assert re.fullmatch(rf"simclr-run{run_id}-attempt2-[0-9a-f]{{8}}", sid)
    assert submission_id(sqlite_url, run) == sid  # a restarted dispatcher computes the same id
    assert submission_id(sqlite_url + "2", run) != sid


def test_each_queued_run_becomes_one_job_and_ends_with_it(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    ids = create_runs(engine, [tiny_config(seed=i) for i in range(3)] + [tiny_config(device="cpu")])
    jobs = FakeJobs()
    d = dispatcher(sqlite_url, jobs, max_pending=2)
    d.tick()
    assert len(jobs.submitted) == 2  # --max-pending: the rest wait in the database, not in Ray
    assert [get_run(engine, i)["status"] for i in ids] == [RUNNING, RUNNING, QUEUED, QUEUED]
    for sub in jobs.submitted:
        jobs.set(sub["sid"], "RUNNING")
    d.tick()
    assert len(jobs.submitted) == 4
    by_run = {int(re.search(r"run(\d+)-", s["sid"])[1]): s for s in jobs.submitted}
    assert by_run[ids[0]]["entrypoint"] == f"python -m engine execute {ids[0]} --attempt 1"
    assert [by_run[i]["num_gpus"] for i in ids] == [1, 1, 1, 0]  # auto on a GPU cluster; cpu
    run = get_run(engine, ids[0])
    assert run["worker_id"] == "ray:" + by_run[ids[0]]["sid"] and run["attempts"] == 1
    assert run["executor"] == executor.ray_job(by_run[ids[0]]["sid"], "10.0.0.7", "http://head:8265")
    assert executor.ray_job_link(run["executor"]) == f"http://head:8265/#/jobs/{by_run[ids[0]]['sid']}"
    # The job's process records the result, then Ray marks the job SUCCEEDED: nothing more to do.
    from db.session import write_tx
    from db.status import transition
    with write_tx(engine) as conn:
        transition(conn, ids[0], COMPLETED, expect=RUNNING)
    jobs.set(by_run[ids[0]]["sid"], "SUCCEEDED", "Job finished successfully.")
    d.tick()
    assert get_run(engine, ids[0])["status"] == COMPLETED
    assert "output of" in Path(get_run(engine, ids[0])["log_path"]).read_text()  # the job's log, saved
    assert len(jobs.submitted) == 4


def test_a_job_that_ends_without_a_result_is_requeued_then_failed(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_config()], retries=1)
    jobs, lines = FakeJobs(), []
    d = dispatcher(sqlite_url, jobs, log=lines.append)
    d.tick()
    first = jobs.submitted[0]["sid"]
    jobs.set(first, "FAILED", "Job entrypoint command failed with exit code 137, last available logs (truncated "
                              "to 20,000 chars):\nepoch 1/3\nKilled")
    d.tick()  # requeued (1 retry), and at once submitted again as attempt 2
    assert [s["sid"] for s in jobs.submitted][1:] == [first.replace("attempt1", "attempt2")]
    run = get_run(engine, run_id)
    assert run["status"] == RUNNING and run["attempts"] == 2 and run["retries_left"] == 0
    assert any(f"Ray job {first} ended FAILED: Job entrypoint command failed with exit code 137 (killed by SIGKILL); "
               "requeued to resume from its last checkpoint (0 retries left)" in line for line in lines), lines
    jobs.set(jobs.submitted[1]["sid"], "FAILED", "Job entrypoint command failed with exit code 1.")
    d.tick()
    run = get_run(engine, run_id)
    assert run["status"] == FAILED
    assert run["error"] == f"Ray job {jobs.submitted[1]['sid']} ended FAILED: Job entrypoint command failed with " \
                           "exit code 1 (gave up after 2 attempts)"


def test_a_restarted_dispatcher_never_submits_an_attempt_twice(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    a_run, b_run, c_run = create_runs(engine, [tiny_config(seed=i) for i in range(3)])
    jobs = FakeJobs()
    d = dispatcher(sqlite_url, jobs, max_pending=3)
    # Dispatcher 1 dies after handing run a's claim to its job id, before submitting it...
    run = queue.claim_next(engine, d.id, "ray")
    sid_a = submission_id(sqlite_url, run)
    assert queue.hand_over_claim(engine, a_run, d.id, "ray:" + sid_a)
    # ...and another one after submitting run b, before recording where it runs.
    run = queue.claim_next(engine, d.id, "ray")
    sid_b = submission_id(sqlite_url, run)
    assert queue.hand_over_claim(engine, b_run, d.id, "ray:" + sid_b)
    jobs.submit(sid_b, "python -m engine execute 2", num_gpus=1, num_cpus=1, env={})
    restarted = dispatcher(sqlite_url, jobs, max_pending=3)
    restarted.tick()
    restarted.tick()
    sids = [s["sid"] for s in jobs.submitted]
    assert sorted(sids) == sorted(set(sids)) and len(sids) == 3  # a submitted once now, b not again, c new
    assert sid_a in sids and sid_b in sids
    assert all(get_run(engine, i)["attempts"] == 1 for i in (a_run, b_run, c_run))
    assert get_run(engine, b_run)["executor"].startswith(f"ray job {sid_b}")


def test_a_job_ray_no_longer_knows_is_requeued(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_config()], retries=1)
    jobs = FakeJobs()
    d = dispatcher(sqlite_url, jobs, max_pending=1)
    d.tick()
    jobs.jobs.clear()  # the Ray head restarted and lost its job table
    d.tick()
    run = get_run(engine, run_id)
    assert run["attempts"] == 2 and run["status"] == RUNNING
    assert len(jobs.submitted) == 2


def test_a_pending_job_whose_attempt_was_given_up_is_stopped(sqlite_url: str) -> None:
    from datetime import timedelta

    from db.session import write_tx
    from db.status import transition, utcnow

    engine = make_engine(sqlite_url)
    given_up, done = create_runs(engine, [tiny_config(seed=1), tiny_config(seed=2)], retries=1)
    jobs = FakeJobs()
    dispatcher(sqlite_url, jobs, max_pending=2).tick()  # both submitted; then the dispatcher stops
    old, finishing = (claim_of(engine, i)[4:] for i in (given_up, done))
    with write_tx(engine) as conn:  # this one's process recorded its result and is exiting
        transition(conn, done, COMPLETED, expect=RUNNING)
    jobs.set(finishing, "RUNNING")
    jobs.set("simclr-run1-attempt1-0123abcd", "PENDING")  # another database's job
    assert queue.recover_stale(engine, 60, now=utcnow() + timedelta(seconds=120))  # requeued while unwatched
    dispatcher(sqlite_url, jobs, max_pending=2).tick()
    assert jobs.stopped == [old]  # not the exiting one, not the other database's
    assert claim_of(engine, given_up) == "ray:" + old.replace("attempt1", "attempt2")


def test_cancel_stops_a_pending_job_at_once_and_a_running_one_after_the_grace(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    pending, running = create_runs(engine, [tiny_config(seed=1), tiny_config(seed=2)])
    jobs = FakeJobs()
    d = dispatcher(sqlite_url, jobs, cancel_grace_s=0.5)
    d.tick()
    sid_pending, sid_running = (claim_of(engine, i)[4:] for i in (pending, running))
    jobs.set(sid_running, "RUNNING")
    queue.request_cancel(engine, pending)
    queue.request_cancel(engine, running)
    d.tick()
    assert jobs.stopped == [sid_pending]  # never started: nothing to wait for
    t0 = time.monotonic()
    wait_until(lambda: (d.tick(), sid_running in jobs.stopped)[1], 5, "the running job to be stopped")
    assert time.monotonic() - t0 >= 0.4  # not before the grace period
    jobs.set(sid_pending, "STOPPED", "Job was intentionally stopped.")
    jobs.set(sid_running, "STOPPED", "Job was intentionally stopped.")
    d.tick()
    for run_id in (pending, running):
        run = get_run(engine, run_id)
        assert run["status"] == CANCELLED and "Job was intentionally stopped" in run["error"]


def test_a_run_needing_more_gpus_than_any_node_fails_clearly(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_config(device="cuda")])
    jobs = FakeJobs(gpus_per_node=[0, 0])
    dispatcher(sqlite_url, jobs).tick()
    run = get_run(engine, run_id)
    assert not jobs.submitted
    assert run["status"] == FAILED and run["error"] == \
        "the run needs 1 GPU(s) on one machine; the Ray cluster's largest node has 0"


def test_a_job_that_starts_after_its_claim_was_given_up_leaves_the_run_alone(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from engine.jobs.cli import main

    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_config()])
    queue.claim_next(engine, "ray:simclr-run1-attempt2-0123abcd", "ray")  # the run's current claim
    monkeypatch.setenv("SIMCLR_CLAIM", "ray:simclr-run1-attempt1-0123abcd")  # an older attempt's job
    assert main(["--db", sqlite_url, "execute", str(run_id), "--attempt", "1"]) == 0
    assert "no longer claimed by ray:simclr-run1-attempt1-0123abcd" in capsys.readouterr().out
    run = get_run(engine, run_id)
    assert run["status"] == RUNNING and run["worker_id"] == "ray:simclr-run1-attempt2-0123abcd"
    assert not metric_rows(engine, [run_id])


def test_one_dispatcher_per_database(sqlite_url: str) -> None:
    jobs = FakeJobs()
    first = dispatcher(sqlite_url, jobs, heartbeat_s=5.0)
    queue.register_worker(first.engine, first.id, hostname=first.hostname, pid=os.getpid(), slots=1,
                          devices="ray http://fake-ray:8265")
    with pytest.raises(DispatchError, match="another Ray dispatcher .* is alive on this database"):
        dispatcher(sqlite_url, jobs, heartbeat_s=5.0)._refuse_second_dispatcher()


# ------------------------------------------------------------------------------------ on real Ray
TINY = dict(dataset="synthetic", image_size=8, encoder="resnet18", stem="imagenet", projection_dim=8,
            batch_size=16, subset_size=16, epochs=1, eval_every=1, knn_k=5)
STEPS_PER_EPOCH = 32
LONG = {**TINY, "subset_size": 16 * STEPS_PER_EPOCH, "epochs": 2, "eval_every": 2}


def start_dispatcher(db_url: str, address: str, *args: str, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "--db", db_url, "dispatch", "--ray", address, "--poll", "0.2", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            # SIMCLR_HEARTBEAT_S travels to the jobs: cancel requests are seen within a second.
            env={**os.environ, "PYTHONPATH": str(ROOT), "SIMCLR_HEARTBEAT_S": "1"})


def job_of(engine, run_id: int) -> str:  # noqa: ANN001
    return get_run(engine, run_id)["worker_id"][len("ray:"):]


def ray_client(ray_head):  # noqa: ANN001, ANN201
    return RayJobs(ray_head.address).client


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def environ(p: psutil.Process) -> dict[str, str]:
    try:
        return p.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return {}


def contiguous_steps(engine, run_id: int) -> list[int]:  # noqa: ANN001
    steps = [r["step"] for r in metric_rows(engine, [run_id], ["train/loss"])]
    assert steps == list(range(1, len(steps) + 1)), "train/loss steps must be unique and contiguous from 1"
    return steps


@pytest.mark.slow
def test_ray_sweep_runs_every_run_once_across_a_dispatcher_restart(pg_url: str, ray_head, tmp_path: Path) -> None:  # noqa: ANN001
    engine = make_engine(pg_url)
    # Two runs that train on a GPU when there is one (device auto: each job gets one of the fake
    # GPUs, yet CUDA is absent here, so they train on the CPU), one that never asks for a GPU.
    configs = [RunConfig(**{**TINY, "seed": i}) for i in range(2)] + [RunConfig(**{**TINY, "device": "cpu"})]
    ids = create_runs(engine, configs)
    logs = [tmp_path / "dispatcher1.log", tmp_path / "dispatcher2.log"]
    first = start_dispatcher(pg_url, ray_head.address, "--max-pending", "1", log_path=logs[0])
    try:
        wait_until(lambda: any(r["executor"] for r in list_runs(engine)), 120, "the first job to be submitted")
        first.send_signal(signal.SIGKILL)  # mid-sweep, without a chance to tidy up
        first.wait()
        second = start_dispatcher(pg_url, ray_head.address, "--max-pending", "1", "--exit-when-idle",
                                  log_path=logs[1])
        assert second.wait(timeout=300) == 0, logs[1].read_text()
    finally:
        stop(first)
    runs = {r["id"]: r for r in list_runs(engine)}
    text = "".join(p.read_text() for p in logs)
    bad = {i: (r["status"], r["error"]) for i, r in runs.items() if r["status"] != COMPLETED}
    assert not bad, f"{bad}\n{text}"
    assert all(r["attempts"] == 1 for r in runs.values()), text
    client = ray_client(ray_head)
    for run_id in ids:
        sid = job_of(engine, run_id)
        assert len(re.findall(rf"submitted as job {sid}:", text)) <= 1  # "already in Ray" after a crash is fine
        info = client.get_job_info(sid)
        assert info.status.value == "SUCCEEDED"
        wants_gpu = runs[run_id]["config"]["device"] == "auto"
        assert info.metadata == {"simclr_run": str(run_id), "gpus": "1" if wants_gpu else "0"}
        seen = re.search(r"CUDA_VISIBLE_DEVICES=(\S+),", client.get_job_logs(sid))[1]
        assert seen in (("'0'", "'1'") if wants_gpu else ("''",))  # Ray's GPU, or none for a CPU run
        assert runs[run_id]["device"] == "cpu"  # trained on the CPU even with a (fake) GPU assigned
        assert runs[run_id]["executor"].startswith(f"ray job {sid} on node 127.0.0.1")
    # Ray knows exactly one job per run of this database: nothing was submitted twice.
    known = [j.submission_id or "" for j in client.list_jobs()]
    for run_id in ids:
        sid = job_of(engine, run_id)
        assert [k for k in known if k.startswith(f"simclr-run{run_id}-") and k.endswith(sid[-9:])] == [sid]


@pytest.mark.slow
def test_ray_cancel_reaches_a_running_run(pg_url: str, ray_head, tmp_path: Path) -> None:  # noqa: ANN001
    engine = make_engine(pg_url)
    [run_id] = create_runs(engine, [RunConfig(**{**LONG, "epochs": 50})])
    log = tmp_path / "dispatcher.log"
    proc = start_dispatcher(pg_url, ray_head.address, "--exit-when-idle", "--cancel-grace", "30", log_path=log)
    try:
        wait_until(lambda: get_run(engine, run_id)["step"] >= 3, 180, "the run to train a few steps")
        t0 = time.monotonic()
        assert "will stop within seconds" in queue.request_cancel(engine, run_id)
        run = wait_until(lambda: (r := get_run(engine, run_id))["status"] == CANCELLED and r, 30,
                         "the run to stop")
        assert time.monotonic() - t0 < 25  # through the run's own heartbeat, before the 30 s grace period
        assert run["epoch"] < 50 and run["error"] == "cancelled by request"
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        stop(proc)
    assert ray_client(ray_head).get_job_status(job_of(engine, run_id)).value == "SUCCEEDED"
    assert "stopping Ray job" not in log.read_text()  # it stopped by itself


@pytest.mark.slow
def test_ray_killed_job_process_is_requeued_and_resumed(pg_url: str, ray_head, tmp_path: Path) -> None:  # noqa: ANN001
    engine = make_engine(pg_url)
    [run_id] = create_runs(engine, [RunConfig(**LONG)], retries=1)
    log = tmp_path / "dispatcher.log"
    proc = start_dispatcher(pg_url, ray_head.address, "--exit-when-idle", log_path=log)
    try:
        wait_until(lambda: (r := get_run(engine, run_id))["checkpoint_path"] and
                   STEPS_PER_EPOCH + 2 <= r["step"] < 2 * STEPS_PER_EPOCH - 2, 240, "the run to be mid-epoch 2",
                   every_s=0.05)
        claim = get_run(engine, run_id)["worker_id"]
        [child] = [p for p in psutil.process_iter(["cmdline"])
                   if (p.info["cmdline"] or [])[-5:-2] == ["engine", "execute", str(run_id)] and environ(p).get(
                       "SIMCLR_CLAIM") == claim]
        child.kill()
        assert proc.wait(timeout=300) == 0, log.read_text()
    finally:
        stop(proc)
    run = get_run(engine, run_id)
    text = log.read_text()
    assert run["status"] == COMPLETED and run["error"] is None, text
    assert run["attempts"] == 2 and run["retries_left"] == 0
    assert "exit code 137 (killed by SIGKILL); requeued to resume from its last checkpoint" in text, text
    logs = ray_client(ray_head).get_job_logs(job_of(engine, run_id))
    assert "resumed from" in logs, logs
    assert contiguous_steps(engine, run_id)[-1] == 2 * STEPS_PER_EPOCH
