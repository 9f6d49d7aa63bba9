"""A local Ray head for the dispatcher tests, started once per test session and stopped at its end.

engine/jobs/ray_local.py starts it: 127.0.0.1 only, usage statistics off, token authentication on
with a fresh token, and 2 fake GPUs, so GPU requests and CUDA_VISIBLE_DEVICES assignment are real
on a machine without any. The token goes into this process's environment for the session, so every
client and dispatcher the tests start has it.

Without Ray, the tests that need it skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from engine.jobs.ray_local import LocalRayHead, RayStartError
from tests.conftest import IN_CI

FAKE_GPUS = 2


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRayHead]:
    try:
        # 4 logical CPUs: the tests' jobs ask for 1 each and a few run at once (2 GPU runs, a CPU run).
        head = LocalRayHead.start(num_gpus=FAKE_GPUS, num_cpus=4)
    except RayStartError as e:
        if IN_CI:
            pytest.fail(f"the Ray tests cannot run: {e}")
        pytest.skip(f"no local Ray head: {e}")
    saved = {k: os.environ.get(k) for k in head.env}
    os.environ.update(head.env)  # clients in this process and every process it starts
    try:
        yield head
    finally:
        head.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
