"""Sweeps: grid parsing, expansion into validated configs, and all-or-none enqueueing."""

from __future__ import annotations

import pytest

from db import queue, sweep
from db.config import RunConfig
from db.queries import get_run
from db.session import make_engine


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def test_parse_grid_accepts_flag_or_field_names() -> None:
    assert sweep.parse_grid(["batch-size=64,128", "seed= 0, 1 ,2"]) == [
        ("batch_size", ["64", "128"]), ("seed", ["0", "1", "2"])]


@pytest.mark.parametrize("entry, words", [
    ("batch_size", "expected FIELD=V1,V2"), ("batch_size=", "expected FIELD=V1,V2"),
    ("batch_size=64,,128", "expected FIELD=V1,V2"), ("bogus=1,2", "unknown configuration field 'bogus'"),
    ("seed=1,1", "listed twice")])
def test_parse_grid_errors(entry: str, words: str) -> None:
    with pytest.raises(sweep.SweepError, match=words):
        sweep.parse_grid([entry])


def test_expand_grid_is_the_cartesian_product_in_order() -> None:
    grid = sweep.parse_grid(["batch_size=16,32", "subset_size=64,128"])
    plan = sweep.expand_grid({"dataset": "synthetic"}, grid)
    assert [c for c, _ in plan] == [{"batch_size": "16", "subset_size": "64"}, {"batch_size": "16", "subset_size": "128"},
                                    {"batch_size": "32", "subset_size": "64"}, {"batch_size": "32", "subset_size": "128"}]
    assert all(isinstance(cfg, RunConfig) for _, cfg in plan)
    assert [(cfg.batch_size, cfg.subset_size) for _, cfg in plan] == [(16, 64), (16, 128), (32, 64), (32, 128)]


def test_one_bad_combination_names_itself_and_enqueues_nothing(engine) -> None:
    grid = sweep.parse_grid(["batch_size=16,128", "subset_size=64,500"])
    with pytest.raises(sweep.SweepError) as info:
        sweep.expand_grid({"dataset": "synthetic"}, grid)
    message = str(info.value)
    assert "1 of 4 combinations is invalid; nothing was enqueued" in message
    assert "batch_size=128 subset_size=64: subset_size: must be at least one batch (128 images)" in message
    assert queue.has_queued(engine) is False


def test_grid_field_also_given_as_a_single_value_is_refused() -> None:
    with pytest.raises(sweep.SweepError, match="both as a single value and in --grid"):
        sweep.expand_grid({"batch_size": "16"}, [("batch_size", ["16", "32"])])


def test_enqueue_a_sweep_records_one_sweep_id_and_names(engine) -> None:
    plan = sweep.expand_grid({"dataset": "synthetic", "subset_size": "64"}, [("batch_size", ["16", "32"])])
    sweep_id, queued = sweep.enqueue(engine, plan, sweep=True, name="bs", retries=2)
    assert sweep_id and len(queued) == 2
    rows = [get_run(engine, run_id) for run_id, _ in queued]
    assert {r["sweep_id"] for r in rows} == {sweep_id}
    assert [r["name"] for r in rows] == ["bs batch_size=16", "bs batch_size=32"]
    assert [r["batch_size"] for r in rows] == [16, 32] and all(r["retries_left"] == 2 for r in rows)
    single_sweep, [(single, label)] = sweep.enqueue(engine, sweep.expand_grid({"dataset": "synthetic"}, []),
                                                    sweep=False)
    assert single_sweep is None and label == "" and get_run(engine, single)["sweep_id"] is None


# ------------------------------------------------------------------------------- bounded input
def test_a_huge_grid_is_refused_from_its_value_counts_before_building_combinations() -> None:
    import tracemalloc

    grid = [("seed", list(range(200))), ("batch_size", list(range(2, 202))), ("epochs", list(range(1, 51)))]
    built: list[dict] = []
    tracemalloc.start()
    with pytest.raises(sweep.SweepError, match="2,000,000 combinations"):
        sweep.expand_grid({}, grid, build=lambda values: built.append(values) or RunConfig())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert built == [] and peak < 5_000_000  # two million combinations would be hundreds of MB


@pytest.mark.parametrize("entry, words", [("batch_size=64,64.0", "64 and 64.0 are the same value"),
                                          ("lr=0.1,1e-1", "0.1 and 1e-1 are the same value"),
                                          ("batch_size=64,abc", "expected an integer"),
                                          ("seed=" + ",".join(map(str, range(1001))), "at most 1000")])
def test_grid_values_are_compared_as_values(entry: str, words: str) -> None:
    with pytest.raises(sweep.SweepError, match=words):
        sweep.parse_grid([entry])


@pytest.mark.parametrize("name, retries, words", [("x" * 201, 1, "at most 200 characters"),
                                                  ("a\nb", 1, "control characters"),
                                                  (None, 10**9, "between 0 and 100"), (None, -1, "between 0 and 100")])
def test_names_and_retries_are_bounded(engine, name: str | None, retries: int, words: str) -> None:
    with pytest.raises(sweep.SweepError, match=words):
        sweep.enqueue(engine, [({}, RunConfig(batch_size=64))], sweep=False, name=name, retries=retries)
