from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.config import JITTER_STRENGTH_MAX, ConfigError, RunConfig, coerce_field, default_lr, lr_rule


def test_defaults_are_valid_and_round_trip_through_json() -> None:
    cfg = RunConfig()
    assert cfg.dataset == "cifar10-mini" and cfg.projection_dim == 64 and cfg.temperature == 0.5
    assert cfg.knn_k == 200 and cfg.knn_temperature == 0.1 and cfg.weight_decay == 1e-6
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_frozen() -> None:
    with pytest.raises(Exception):
        RunConfig().batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize("field,value,needle", [
    ("encoder", "vgg16", "encoder: must be one of resnet18, resnet50"),
    ("batch_size", 0, "batch_size: must be >= 2"),
    ("optimizer", "rmsprop", "optimizer: must be one of lars, adam, sgd"),
    ("lr", 0.0, "lr: must be > 0.0"),
    ("lr", -1.0, "lr: must be > 0.0"),
    ("temperature", 0, "temperature: must be > 0.0"),
    ("stem", "tiny", "stem: must be one of cifar, imagenet"),
    ("image_size", 4, "image_size: must be >= 8"),
    ("epochs", 0, "epochs: must be >= 1"),
    ("device", "tpu", "device: must be auto, cpu, cuda, cuda:N or mps"),
    ("precision", "fp8", "precision: must be one of auto, fp32, bf16"),
    ("batch_size", "64", "batch_size: expected int"),
    ("lr", float("nan"), "lr: must be a number"),
])
def test_bad_values_name_the_field_and_the_allowed_range(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    assert needle in str(err.value)
    assert err.value.field == field


def test_subset_must_fit_the_dataset_and_hold_a_batch() -> None:
    with pytest.raises(ConfigError, match="subset_size: must be <= 5000"):
        RunConfig(dataset="cifar10-mini", subset_size=5001, batch_size=64)
    with pytest.raises(ConfigError, match=r"subset_size: must be at least one batch \(64 images\)"):
        RunConfig(subset_size=63, batch_size=64)
    with pytest.raises(ConfigError, match="batch_size: must be <= 1000"):
        RunConfig(dataset="synthetic", batch_size=1024)
    assert RunConfig(subset_size=64, batch_size=64).subset_size == 64


def test_imagefolder_needs_data_dir_and_the_constructor_never_scans_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data_dir: imagefolder needs data_dir"):
        RunConfig(dataset="imagefolder")
    # The folder's contents are db.datasets.check_data's business (tests/db/test_datasets.py).
    assert RunConfig(dataset="imagefolder", data_dir=str(tmp_path / "nope")).data_dir == str(tmp_path / "nope")


def test_config_error_carries_field_and_message_apart() -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig(batch_size=1)
    assert (err.value.field, err.value.message) == ("batch_size", "must be >= 2 and <= 65536; got 1")
    assert str(err.value) == "batch_size: must be >= 2 and <= 65536; got 1"


def test_jitter_strength_above_what_the_augmentation_takes_is_refused() -> None:
    assert RunConfig(jitter_strength=JITTER_STRENGTH_MAX).jitter_strength == 2.5
    with pytest.raises(ConfigError, match="jitter_strength: must be >= 0.0 and <= 2.5; got 3.0"):
        RunConfig(jitter_strength=3.0)  # refused before it is queued, not when the run starts


def test_lr_rule() -> None:
    assert default_lr("lars", 256) == pytest.approx(0.3)
    assert default_lr("lars", 64) == pytest.approx(0.075)
    assert default_lr("adam", 1024) == 3e-4
    assert RunConfig(optimizer="lars", batch_size=512).effective_lr == pytest.approx(0.6)
    assert RunConfig(optimizer="adam", lr=1e-3).effective_lr == 1e-3
    assert "0.3 x B/256" in lr_rule("lars", 128)


def test_warmup_defaults_to_a_tenth_and_cannot_exceed_epochs() -> None:
    assert RunConfig(epochs=20).effective_warmup_epochs == 2
    with pytest.raises(ConfigError, match="warmup_epochs: must be <= epochs"):
        RunConfig(epochs=2, warmup_epochs=3)


def test_coerce_text_values() -> None:
    assert coerce_field("batch_size", "128") == 128
    assert coerce_field("subset_size", "none") is None
    assert coerce_field("lr", "1e-3") == 1e-3
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        coerce_field("batch_size", "12.5")
    with pytest.raises(ConfigError, match="nosuch: unknown configuration field"):
        coerce_field("nosuch", "1")
    with pytest.raises(ConfigError, match="unknown configuration field"):
        RunConfig.from_dict({"batchsize": 3})


def test_stl10_trains_at_96px_on_its_unlabeled_split_unless_told_otherwise() -> None:
    cfg = RunConfig(dataset="stl10")
    assert (cfg.image_size, cfg.pretrain_split) == (96, "unlabeled")
    assert json.loads(json.dumps(cfg.to_dict()))["image_size"] == 96  # stored as what the run does
    assert RunConfig(dataset="stl10", image_size=32, pretrain_split="train+unlabeled").image_size == 32
    assert (RunConfig().image_size, RunConfig().pretrain_split) == (32, "train")
    with pytest.raises(ConfigError, match="pretrain_split: cifar10 offers train"):
        RunConfig(dataset="cifar10", pretrain_split="unlabeled")
    # Subset sizes are checked against the split chosen.
    RunConfig(dataset="stl10", subset_size=100000, batch_size=256)
    with pytest.raises(ConfigError, match="subset_size: must be <= 5000"):
        RunConfig(dataset="stl10", pretrain_split="train", subset_size=6000)
    # A config stored before the field existed resumes on the images it started with.
    assert RunConfig.from_dict({"dataset": "stl10", "image_size": 32}).pretrain_split == "train+unlabeled"


def test_lr_and_base_lr_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="base_lr: give lr or base_lr"):
        RunConfig(lr=0.1, base_lr=0.4)


def test_stored_configs_without_a_new_field_read_its_default() -> None:
    from db.config import stored_value

    assert stored_value({"batch_size": 64}, "probe") == "lbfgs"
    assert stored_value({"probe": "seed"}, "probe") == "seed"


def test_compile_field() -> None:
    assert RunConfig().compile == "auto"
    assert RunConfig.from_dict({"compile": "on"}).compile == "on"
    assert RunConfig.from_dict({k: v for k, v in RunConfig().to_dict().items() if k != "compile"}).compile == "auto"
    with pytest.raises(ConfigError, match="compile: must be one of auto, on, off; got 'yes'"):
        RunConfig(compile="yes")
