"""The executor column's wording and the Ray dashboard link read back out of it."""

from __future__ import annotations

from db import executor


def test_ray_job_text_and_link() -> None:
    where = executor.ray_job("simclr-run3-attempt2-0123abcd", "10.0.0.7", "http://head:8265/")
    assert where == "ray job simclr-run3-attempt2-0123abcd on node 10.0.0.7 · dashboard http://head:8265"
    assert executor.ray_job_link(where) == "http://head:8265/#/jobs/simclr-run3-attempt2-0123abcd"
    assert executor.label(where) == "ray job simclr-run3-attempt2-0123abcd on node 10.0.0.7"
    pending = executor.ray_job("simclr-run3-attempt2-0123abcd", None, "http://head:8265")
    assert executor.ray_job_link(pending) == "http://head:8265/#/jobs/simclr-run3-attempt2-0123abcd"


def test_no_link_without_a_ray_dashboard() -> None:
    assert executor.ray_job_link(executor.ray_job("simclr-run3-attempt1-0123abcd")) is None
    assert executor.ray_job_link(executor.local_worker("box", 42, [1], "cuda:1")) is None
    assert executor.ray_job_link(None) is None
    assert executor.label(None) == ""


def test_local_worker_slots() -> None:
    assert executor.local_worker("box", 42, [0], "cuda:0") == "worker box:42 slot 0 (cuda:0)"
    assert executor.local_worker("box", 42, [0, 1], "cuda:0,cuda:1") == "worker box:42 slots 0,1 (cuda:0,cuda:1)"
