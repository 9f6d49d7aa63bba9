"""The queue's database side on each backend: claim, recover, finish, cancel, workers."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta

import pytest

from db import queue
from db.config import ConfigError, RunConfig
from db.models import runs
from db.queries import create_runs, get_run, update_run
from db.session import make_engine, write_tx
from db.status import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, transition, utcnow


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def make_runs(engine, tiny_cfg: RunConfig):
    """make_runs(n, retries=1) -> ids of n queued tiny runs."""
    def make(n: int = 1, *, retries: int = 1) -> list[int]:
        return create_runs(engine, [tiny_cfg.replace(seed=i) for i in range(n)], retries=retries)
    return make


def make_stale(engine, run_id: int, seconds: float = 120) -> None:
    update_run(engine, run_id, heartbeat_at=utcnow() - timedelta(seconds=seconds))


# ------------------------------------------------------------------------------------------ claim
def test_claim_takes_the_oldest_queued_run_and_records_the_claim(engine, make_runs) -> None:
    a, b = make_runs(2)
    run = queue.claim_next(engine, "w1", "cuda:0")
    assert run["id"] == a
    assert run["status"] == RUNNING and run["worker_id"] == "w1" and run["device"] == "cuda:0"
    assert run["attempts"] == 1 and run["started_at"] is not None and run["heartbeat_at"] is not None
    assert get_run(engine, a)["status"] == RUNNING  # committed, not only returned
    assert queue.claim_next(engine, "w2", "cpu")["id"] == b
    assert queue.claim_next(engine, "w3", "cpu") is None
    assert not queue.has_queued(engine)


def test_claim_with_room_for_few_devices_skips_larger_runs(engine, tiny_cfg: RunConfig) -> None:
    big, small, old = create_runs(engine, [tiny_cfg.replace(devices=4), tiny_cfg.replace(devices=2), tiny_cfg])
    with write_tx(engine) as conn:  # a run queued before the `devices` field existed: one device
        conn.execute(runs.update().where(runs.c.id == old).values(config={**tiny_cfg.to_dict(), "devices": None}))
    assert queue.claim_next(engine, "w", "cuda:0", max_devices=1)["id"] == old
    assert queue.claim_next(engine, "w", "cuda:0", max_devices=3)["id"] == small
    assert queue.claim_next(engine, "w", "cuda:0", max_devices=3) is None
    assert queue.claim_next(engine, "w", "cpu")["id"] == big  # None: any size
    queue.record_process(engine, big, "w", pid=1, log_path="x", device="cpu x4")
    assert get_run(engine, big)["device"] == "cpu x4"


def test_claim_skips_runs_that_are_not_queued(engine, make_runs) -> None:
    a, b = make_runs(2)
    queue.request_cancel(engine, a)
    assert queue.claim_next(engine, "w", "cpu")["id"] == b


def test_a_retried_claim_keeps_the_first_start_time_and_counts_attempts(engine, make_runs) -> None:
    (a,) = make_runs()
    first = queue.claim_next(engine, "w1", "cpu")
    queue.finish_attempt(engine, a, "w1", 1, -signal.SIGKILL)
    again = queue.claim_next(engine, "w2", "cpu")
    assert again["id"] == a and again["attempts"] == 2 and again["worker_id"] == "w2"
    assert again["started_at"] == first["started_at"]


def test_concurrent_claims_take_each_run_exactly_once(engine, make_runs, db_url: str) -> None:
    ids = make_runs(60)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        eng = make_engine(db_url)  # own connections, like separate worker processes
        try:
            mine = claimed.setdefault(name, [])
            while (run := queue.claim_next(eng, name, "cpu")) is not None:
                mine.append(run["id"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = sorted(i for got in claimed.values() for i in got)
    assert everything == ids  # each exactly once, none lost
    for name, got in claimed.items():
        for run_id in got:
            assert get_run(engine, run_id)["worker_id"] == name


# -------------------------------------------------------------------------------------- recovery
def test_stale_run_is_requeued_while_retries_last_then_fails_worker_lost(engine, make_runs) -> None:
    (a,) = make_runs(retries=1)
    queue.claim_next(engine, "w1", "cpu")
    make_stale(engine, a)
    [outcome] = queue.recover_stale(engine, 60)
    assert outcome.status == QUEUED and "worker lost" in outcome.message
    run = get_run(engine, a)
    assert run["status"] == QUEUED and run["retries_left"] == 0
    assert run["worker_id"] is None and run["pid"] is None and run["error"] is None

    queue.claim_next(engine, "w2", "cpu")
    make_stale(engine, a)
    [outcome] = queue.recover_stale(engine, 60)
    run = get_run(engine, a)
    assert outcome.status == FAILED and run["status"] == FAILED
    assert run["error"].startswith("worker lost: no heartbeat for 60 s") and "2 attempts" in run["error"]
    assert run["finished_at"] is not None


def test_fresh_heartbeats_and_other_statuses_are_left_alone(engine, make_runs) -> None:
    a, b, c = make_runs(3)
    queue.claim_next(engine, "w", "cpu")  # a: running, fresh
    queue.claim_next(engine, "w", "cpu")  # b: running, finished long ago
    with write_tx(engine) as conn:
        transition(conn, b, COMPLETED, expect=RUNNING)
    make_stale(engine, b)
    make_stale(engine, c)  # c: queued
    assert queue.recover_stale(engine, 60) == []
    assert [get_run(engine, i)["status"] for i in (a, b, c)] == [RUNNING, COMPLETED, QUEUED]
    # A heartbeat 30 s old is stale for a 10 s timeout, not for 60 s.
    make_stale(engine, a, 30)
    assert queue.recover_stale(engine, 60) == []
    assert [o.run_id for o in queue.recover_stale(engine, 10)] == [a]


def test_stale_run_that_was_being_cancelled_ends_cancelled(engine, make_runs) -> None:
    (a,) = make_runs()
    queue.claim_next(engine, "w", "cpu")
    queue.request_cancel(engine, a)
    make_stale(engine, a)
    [outcome] = queue.recover_stale(engine, 60)
    assert outcome.status == CANCELLED and get_run(engine, a)["status"] == CANCELLED


def test_two_recoverers_at_once_handle_each_stale_run_once(engine, make_runs, db_url: str) -> None:
    ids = make_runs(10, retries=3)
    for _ in ids:
        queue.claim_next(engine, "w", "cpu")
    for i in ids:
        make_stale(engine, i)
    results: list[list[queue.Outcome]] = []
    threads = [threading.Thread(target=lambda: results.append(queue.recover_stale(make_engine(db_url), 60)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    handled = sorted(o.run_id for r in results for o in r)
    assert handled == ids
    assert all(get_run(engine, i)["retries_left"] == 2 for i in ids)


# ---------------------------------------------------------------------------------- finished child
def test_child_killed_while_running_is_requeued_then_failed_naming_the_signal(engine, make_runs) -> None:
    (a,) = make_runs(retries=1)
    queue.claim_next(engine, "w", "cpu")
    outcome = queue.finish_attempt(engine, a, "w", 1, -signal.SIGKILL)
    assert outcome.status == QUEUED and "SIGKILL" in outcome.message
    queue.claim_next(engine, "w", "cpu")
    outcome = queue.finish_attempt(engine, a, "w", 2, 3)
    run = get_run(engine, a)
    assert outcome.status == FAILED and run["status"] == FAILED
    assert "exited with code 3" in run["error"]


def test_child_that_recorded_its_result_changes_nothing(engine, make_runs) -> None:
    (a,) = make_runs()
    queue.claim_next(engine, "w", "cpu")
    with write_tx(engine) as conn:
        transition(conn, a, FAILED, expect=RUNNING, error="loss became NaN at epoch 1 step 3; try a lower learning rate")
    outcome = queue.finish_attempt(engine, a, "w", 1, 1)
    assert outcome.status == FAILED
    assert get_run(engine, a)["error"].startswith("loss became NaN")


def test_an_old_attempt_cannot_touch_a_newer_claim(engine, make_runs) -> None:
    (a,) = make_runs(retries=2)
    queue.claim_next(engine, "w1", "cpu")
    make_stale(engine, a)
    queue.recover_stale(engine, 60)
    queue.claim_next(engine, "w2", "cpu")  # attempt 2 on another worker
    outcome = queue.finish_attempt(engine, a, "w1", 1, -signal.SIGKILL)  # w1's child dies late
    run = get_run(engine, a)
    assert outcome.status == RUNNING and run["status"] == RUNNING and run["worker_id"] == "w2"
    assert queue.claim_states(engine, {a: 1}, "w1") == {a: "lost"}
    assert queue.claim_states(engine, {a: 2}, "w2") == {a: "ours"}


def test_a_shutdown_requeue_does_not_charge_a_retry(engine, make_runs) -> None:
    (a,) = make_runs(retries=0)
    queue.claim_next(engine, "w", "cpu")
    outcome = queue.finish_attempt(engine, a, "w", 1, -signal.SIGKILL, reason="worker was stopped",
                                   consume_retry=False)
    assert outcome.status == QUEUED and get_run(engine, a)["retries_left"] == 0


@pytest.mark.parametrize("code, words", [(-9, "killed by SIGKILL (out of memory?"), (-11, "killed by SIGSEGV"),
                                         (0, "exited without recording a result"), (2, "exited with code 2")])
def test_exit_descriptions(code: int, words: str) -> None:
    assert words in queue.describe_exit(code)


# ------------------------------------------------------------------------------------------ cancel
def test_cancel_queued_running_finished_and_missing(engine, make_runs) -> None:
    a, b, c = make_runs(3)
    assert "cancelled (it was queued)" in queue.request_cancel(engine, c)
    assert get_run(engine, c)["status"] == CANCELLED
    queue.claim_next(engine, "w", "cpu")  # a
    assert "will stop within seconds" in queue.request_cancel(engine, a)
    assert get_run(engine, a)["cancel_requested"] and get_run(engine, a)["status"] == RUNNING
    assert queue.cancel_requested(engine, [a, b]) == {a}
    assert "already cancelled" in queue.request_cancel(engine, c)
    with pytest.raises(queue.NoSuchRun):
        queue.request_cancel(engine, 9999)


# ----------------------------------------------------------------------------------------- workers
def test_a_run_bigger_than_every_live_worker_is_named_not_left_waiting_silently(engine, tiny_cfg: RunConfig) -> None:
    from db.views import run_summaries

    auto4, cuda4, cpu4, two, one = create_runs(engine, [
        tiny_cfg.replace(devices=4), tiny_cfg.replace(devices=4, device="cuda"), tiny_cfg.replace(devices=4, device="cpu"),
        tiny_cfg.replace(devices=2), tiny_cfg])
    queue.register_worker(engine, "gpus", hostname="h", pid=1, slots=3, devices="cuda:0,cuda:0,cuda:1")
    workers = queue.live_workers(engine)
    assert queue.gpus_per_worker(workers) == 2  # two slots on cuda:0 are still one GPU
    # A cpu run's processes share a CPU slot: its size is not the problem (its device is, said elsewhere).
    assert queue.unservable(run_summaries(engine), workers) == sorted([auto4, cuda4], reverse=True)
    assert f"run {cuda4} asks for more GPUs than any live worker has (at most 2 each)" in \
        queue.too_big_message([cuda4], 2)
    # A CPU slot takes an `auto` run of any size, not a `cuda` one.
    queue.register_worker(engine, "cpus", hostname="h", pid=2, slots=1, devices="cpu")
    assert queue.unservable(run_summaries(engine), queue.live_workers(engine)) == [cuda4]
    # Ray places a dispatcher's jobs itself.
    queue.register_worker(engine, "ray", hostname="h", pid=3, slots=8, devices=f"{queue.DISPATCHER_DEVICES}http://h:8265")
    assert queue.unservable(run_summaries(engine), queue.live_workers(engine)) == []
    assert queue.unservable(run_summaries(engine), []) == []  # no worker at all: said elsewhere


def test_worker_registry_and_heartbeat(engine, make_runs) -> None:
    (a,) = make_runs()
    queue.register_worker(engine, "host:1:0", hostname="host", pid=1, slots=2, devices="cuda:0,cuda:1")
    queue.claim_next(engine, "host:1:0", "cuda:0")
    make_stale(engine, a)
    queue.heartbeat(engine, "host:1:0", [a])  # the worker vouches for its live child
    assert queue.recover_stale(engine, 60) == []
    assert [w["id"] for w in queue.live_workers(engine)] == ["host:1:0"]
    queue.worker_stopped(engine, "host:1:0")
    assert queue.live_workers(engine) == []


def test_a_runs_own_heartbeat_checks_worker_and_attempt(engine, make_runs) -> None:
    (a,) = make_runs()
    queue.claim_next(engine, "w", "cpu")  # attempt 1
    assert queue.beat_run(engine, a, "w", 1) == "ours"
    queue.request_cancel(engine, a)
    assert queue.beat_run(engine, a, "w", 1) == "cancel"
    assert queue.beat_run(engine, a, "other", 1) == "lost"
    make_stale(engine, a)
    update_run(engine, a, cancel_requested=False)
    queue.recover_stale(engine, 60)  # requeued; the same worker claims it again: attempt 2
    assert queue.claim_next(engine, "w", "cpu")["attempts"] == 2
    assert queue.beat_run(engine, a, "w", 1) == "lost"  # the first attempt's process must stop
    assert queue.beat_run(engine, a, "w", 2) == "ours"


def test_train_and_resume_claim_through_the_same_statement(engine, tiny_cfg: RunConfig) -> None:
    run = queue.create_and_claim(engine, tiny_cfg, "cli:h:1", pid=1)
    assert (run["status"], run["worker_id"], run["attempts"], run["pid"]) == (RUNNING, "cli:h:1", 1, 1)
    with pytest.raises(ConfigError, match="is running"):
        queue.claim_for_resume(engine, run["id"], "cli:h:2")  # fresh heartbeat: not stale
    make_stale(engine, run["id"])
    again = queue.claim_for_resume(engine, run["id"], "cli:h:2")
    assert (again["worker_id"], again["attempts"]) == ("cli:h:2", 2)


def test_heartbeat_does_not_revive_a_run_another_worker_holds(engine, make_runs) -> None:
    (a,) = make_runs()
    queue.claim_next(engine, "w2", "cpu")
    make_stale(engine, a)
    queue.heartbeat(engine, "w1", [a])
    assert len(queue.recover_stale(engine, 60)) == 1


def test_resume_requeues_failed_cancelled_and_dead_runs_but_not_completed_or_live(sqlite_url: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import runs
    from db.queries import create_runs, get_run
    from db.queue import resume_runs
    from db.session import make_engine, write_tx
    from db.status import utcnow
    from tests.conftest import tiny_config

    engine = make_engine(sqlite_url)
    ids = create_runs(engine, [tiny_config()] * 5)
    failed, cancelled, dead, live, done = ids
    states = {failed: dict(status="failed", error="boom"), cancelled: dict(status="cancelled", cancel_requested=True),
              dead: dict(status="running", heartbeat_at=utcnow() - timedelta(hours=1), worker_id="gone"),
              live: dict(status="running", heartbeat_at=utcnow(), worker_id="here"), done: dict(status="completed")}
    with write_tx(engine) as conn:
        for run_id, values in states.items():
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    said = dict(resume_runs(engine, ids))
    for run_id in (failed, cancelled, dead):
        run = get_run(engine, run_id)
        assert run["status"] == "queued" and not run["cancel_requested"] and run["error"] is None, run
        assert run["worker_id"] is None and "queued to resume" in said[run_id]
    assert get_run(engine, live)["status"] == "running" and "is running" in said[live]
    assert get_run(engine, done)["status"] == "completed" and "already completed" in said[done]
    engine.dispose()


# ------------------------------------------------------------------------------- bounded input
def test_long_paths_and_odd_devices_are_refused_by_the_config() -> None:
    from db.config import ConfigError

    with pytest.raises(ConfigError, match="data_dir: must be a path of at most 1024 characters"):
        RunConfig(dataset="imagefolder", data_dir="/x" * 2500)
    for device in ("cuda:99999999999999999999", "cuda:²", "gpu", "cuda:-1"):
        with pytest.raises(ConfigError, match="device"):
            RunConfig(device=device)
