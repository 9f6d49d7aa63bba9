"""Estimates from measured phase times of finished runs like the one asked about, a calibrated model
otherwise, and the ETA of a running run from its own speed."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.estimate import eta_s, estimate, knn_passes
from db.config import RunConfig

BASE = dict(dataset="cifar10-mini", subset_size=300, batch_size=64, epochs=2, eval_every=1, device="cpu")


def finished(duration_s: float = 30.0, device: str = "cpu", **config: Any) -> dict[str, Any]:
    """A completed run as db.views.run_timings returns it: 256 images per epoch at 100 images/s."""
    cfg = RunConfig(**{**BASE, **config})
    return {"id": 1, "config": cfg.to_dict(), "device": device, "duration_s": duration_s,
            "time/epoch_s": [2.56, 2.56], "time/knn_s": [3.0, 3.0], "time/linear_s": [4.0],
            "time/checkpoint_s": [0.5, 0.5]}


def test_measured_phases_of_a_run_like_it_add_up() -> None:
    cfg = RunConfig(**{**BASE, "epochs": 4, "eval_every": 2})
    est = estimate(cfg, [finished()], ["cpu"])
    overhead = 30.0 - 5.12 - 6.0 - 4.0 - 1.0  # what the finished run spent outside its measured phases
    assert est.seconds == pytest.approx(overhead + 256 * 4 / 100 + 2 * 3.0 + 4.0 + 4 * 0.5)
    assert est.basis == "measured: 1 finished run like it on cpu"


def test_another_batch_size_or_device_is_not_like_it() -> None:
    cfg = RunConfig(**{**BASE, "batch_size": 32})
    calibrated = estimate(cfg, [finished()], ["cpu"])
    assert calibrated.basis == "model calibrated on 1 finished run on cpu"
    # Same encoder, stem and image size: the same FLOP rate, so about the same speed per image.
    assert calibrated.seconds == pytest.approx(estimate(RunConfig(**BASE), [finished()], ["cpu"]).seconds, rel=0.05)
    on_gpu = estimate(RunConfig(**{**BASE, "device": "cuda"}), [finished()], ["cuda:0"])
    assert on_gpu.basis == "rough: FLOP count on cuda, no finished run to measure"


def test_the_calibrated_rate_comes_from_runs_with_the_same_stem_when_there_are_some() -> None:
    from dashboard.estimate import parts

    cifar, imagenet = finished(stem="cifar"), finished(stem="imagenet")
    imagenet["time/epoch_s"] = [0.256, 0.256]  # ten times the images/s of the cifar run
    other_batch = RunConfig(**{**BASE, "batch_size": 32, "stem": "cifar"})  # not "like it": calibrated
    alone = parts(other_batch, [cifar], "cpu")
    assert parts(other_batch, [cifar, imagenet], "cpu").images_per_s == pytest.approx(alone.images_per_s)
    # With no run of its stem, any run on the device kind says how fast the machine is.
    assert parts(RunConfig(**{**BASE, "batch_size": 32, "stem": "imagenet"}), [cifar], "cpu").basis.startswith(
        "model calibrated")


def test_the_probes_time_comes_from_runs_with_the_same_probe() -> None:
    from dashboard.estimate import parts

    seed_probe = {**finished(probe="seed"), "time/linear_s": [40.0]}
    history = [finished(), seed_probe]
    assert parts(RunConfig(**BASE), history, "cpu").linear_s == 4.0
    assert parts(RunConfig(**BASE, probe="seed"), history, "cpu").linear_s == 40.0
    # Other probe epochs, another time; a stored config from before the probe field reads lbfgs.
    assert parts(RunConfig(**BASE, probe="seed", probe_epochs=5), history, "cpu").linear_s != 40.0
    legacy = finished()
    legacy["config"] = {k: v for k, v in legacy["config"].items() if k not in ("probe", "probe_epochs")}
    assert parts(RunConfig(**BASE), [legacy], "cpu").linear_s == 4.0


def test_without_history_a_rough_model_that_grows_with_the_work() -> None:
    small = estimate(RunConfig(**BASE), [], ["cpu"])
    big = estimate(RunConfig(**{**BASE, "epochs": 20, "encoder": "resnet50"}), [], ["cpu"])
    assert small.basis.startswith("rough") and 0 < small.seconds < big.seconds


def test_knn_passes_every_eval_every_epochs_and_at_the_end() -> None:
    cfg = RunConfig(**{**BASE, "epochs": 7, "eval_every": 3})
    assert knn_passes(cfg, 0) == 3 and knn_passes(cfg, 3) == 2 and knn_passes(cfg, 6) == 1 and knn_passes(cfg, 7) == 0


def running(**values: Any) -> dict[str, Any]:
    cfg = RunConfig(**{**BASE, "epochs": 4, "eval_every": 2})
    return {"status": "running", "config": cfg.to_dict(), "device": "cpu", "total_steps": 16, "duration_s": 10.0,
            "latest_images_per_sec": 50.0, "latest_knn_s": None, **values}


def test_eta_of_a_running_run_from_its_own_speed_and_what_is_left() -> None:
    history = [finished()]
    # Half-way through training at 50 images/s: 8 steps x 64 images, the second kNN pass, the probe.
    eta = eta_s(running(phase="training", step=8, epoch=2, latest_knn_s=6.0), history)
    assert eta == pytest.approx(8 * 64 / 50 + 1 * 6.0 + 2 * 0.5 + 4.0)
    probe = eta_s(running(phase="linear probe", step=16, epoch=4), history)
    assert probe == pytest.approx(2.0)  # half the probe, on average
    assert eta_s(running(phase="starting", step=0, epoch=0), history) > eta
    assert eta_s({**running(phase="training", step=8, epoch=2), "status": "completed"}, history) is None
