"""Fixtures shared by every test package: isolated run folders and databases on each backend.

PostgreSQL tests use the server named by SIMCLR_TEST_PG (./lab.sh test starts one); each test
gets its own schema. Without that variable they skip, except in CI, where they fail: a green
CI must have run them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from db.config import RunConfig
from db.session import scratch_schema

PG_URL = os.environ.get("SIMCLR_TEST_PG")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip (and say so) where there is no GPU; bench/gpu_check.py runs them on one."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU: bench/gpu_check.py)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run folders per test; one decoded-data cache for the whole session (decoding is the slow part)."""
    monkeypatch.setenv("SIMCLR_RUNS_DIR", str(tmp_path / "runs"))
    cache = os.environ.get("SIMCLR_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "data-cache")
    monkeypatch.setenv("SIMCLR_CACHE", cache)
    monkeypatch.delenv("SIMCLR_DB", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server, dropped afterwards."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("SIMCLR_TEST_PG is not set in CI: ./lab.sh test should have started PostgreSQL")
        pytest.skip("no PostgreSQL server: set SIMCLR_TEST_PG (./lab.sh test starts one)")
    with scratch_schema(PG_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test against each storage backend (as optuna-dashboard does)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def tiny_config(**overrides: object) -> RunConfig:
    """The cheapest real run: synthetic 16x16 images, ResNet18 with the imagenet stem, one epoch."""
    values = dict(dataset="synthetic", image_size=16, encoder="resnet18", stem="imagenet", projection_dim=16,
                  batch_size=32, subset_size=64, epochs=1, eval_every=1, knn_k=10, optimizer="lars")
    values.update(overrides)
    return RunConfig(**values)


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return tiny_config()
