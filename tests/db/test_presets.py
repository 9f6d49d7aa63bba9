"""Presets: every one is a valid configuration (every grid combination too), and they compose."""

from __future__ import annotations

import pytest

from db.baseline import baseline_table
from db.config import config_from_text
from db.presets import PRESETS, QUICK_CPU, UnknownPreset, combine
from db.sweep import expand_grid


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_valid_runs(name: str) -> None:
    values, grid = combine([name])
    runs = expand_grid(values, list(grid.items()), build=config_from_text)
    assert runs and all(cfg is not None for _, cfg in runs)


def test_the_two_readings_of_the_baseline_table() -> None:
    table = baseline_table()
    assert len(table.cells) == 12 and table.cells[(300, 64)] == (0.629, 0.7103)
    assert table.cells[(1500, 256)] == (0.3936, 0.8362) and "SimCLR 학습결과" in table.source
    subset = expand_grid(*_request(["baseline-subset"]), build=config_from_text)
    epochs = expand_grid(*_request(["baseline-epochs"]), build=config_from_text)
    assert {(c.subset_size, c.batch_size) for _, c in subset} == set(table.cells)
    assert {(c.epochs, c.batch_size) for _, c in epochs} == set(table.cells)
    assert {(c.dataset, c.subset_size, c.encoder, c.optimizer) for _, c in epochs} == {
        ("cifar10", None, "resnet18", "lars")}
    for name in ("baseline-subset", "baseline-epochs"):
        assert "two presets" in PRESETS[name].why


def test_presets_compose_and_a_later_one_wins() -> None:
    values, grid = combine(["baseline-epochs", "seed-code"])
    assert "epochs" in grid and values["probe"] == "seed" and values["dataset"] == "cifar10"
    values, grid = combine(["baseline-epochs", QUICK_CPU])  # quick-cpu sets epochs: the grid on it goes
    assert "epochs" not in grid and values["epochs"] == PRESETS[QUICK_CPU].values["epochs"]
    with pytest.raises(UnknownPreset, match="known: baseline-subset"):
        combine(["nope"])


def test_solo_learn_recipe_values() -> None:
    cfg = config_from_text(PRESETS["solo-cifar"].values)
    assert cfg.effective_lr == pytest.approx(0.4)  # 0.4 x 256/256
    assert (cfg.lars_trust_coefficient, cfg.lars_clip_lr, cfg.lars_exclude, cfg.weight_decay) == (
        0.02, "yes", "bn_bias", 1e-4)
    assert (cfg.temperature, cfg.projection_hidden_dim, cfg.projection_dim, cfg.warmup_epochs) == (0.2, 2048, 256, 10)
    assert config_from_text({**PRESETS["solo-cifar"].values, "batch_size": "512"}).effective_lr == pytest.approx(0.8)


def _request(names: list[str]) -> tuple[dict, list]:
    values, grid = combine(names)
    return values, list(grid.items())
