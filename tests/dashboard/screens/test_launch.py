"""Launch page: the form mirrors RunConfig, refuses bad input inline, and grids enqueue sweeps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.dashboard.dash_helpers import texts
from db.config import PROJECT_ROOT, config_fields
from db.queries import list_runs


def _set(at, **values: str):  # noqa: ANN001, ANN202
    for name, value in values.items():
        at.text_input(key=f"lf_{name}").set_value(value)
    return at.run()


def _launch(at):  # noqa: ANN001, ANN202
    return at.button(key="launch_button").click().run()


def _field_errors(at) -> str:  # noqa: ANN001
    return "\n".join(texts(at, "error"))


def test_every_config_field_has_a_widget_with_help(app, db: Engine) -> None:
    at = app()
    widgets = {w.key: w for w in [*at.text_input, *at.selectbox]}
    for f in config_fields():
        w = widgets.get(f"lf_{f.name}")
        assert w is not None, f"no form widget for {f.name}"
        assert f.metadata["help"].split(" (")[0].rstrip(".")[:20] in w.help
    # defaults: the form starts at RunConfig's defaults
    assert widgets["lf_batch_size"].value == "256" and widgets["lf_optimizer"].value == "lars"
    assert widgets["lf_subset_size"].value == ""  # None = all images


def test_valid_single_launch_enqueues_one_run(app, db: Engine) -> None:
    at = _set(app(), batch_size="64", subset_size="300", epochs="1")
    assert not at.error
    assert at.metric[0].label == "Runs" and at.metric[0].value == "1"
    assert "Estimated time per run" in [m.label for m in at.metric]
    _launch(at)
    assert any("Queued run" in s for s in texts(at, "success"))
    [run] = list_runs(db)
    assert (run["status"], run["batch_size"], run["subset_size"], run["epochs"]) == ("queued", 64, 300, 1)
    assert run["sweep_id"] is None


@pytest.mark.parametrize("values, field_text", [
    ({"lr": "-1"}, "must be > 0"),
    ({"lr": "0"}, "must be > 0"),
    ({"subset_size": "100000"}, "must be <= 5000"),  # larger than cifar10-mini
    ({"subset_size": "100", "batch_size": "256"}, "at least one batch"),
    ({"batch_size": "abc"}, "expected an integer"),
    ({"epochs": "0"}, "must be >= 1"),
])
def test_invalid_values_show_inline_errors_and_enqueue_nothing(app, db: Engine, values, field_text) -> None:
    at = _set(app(), **values)
    assert field_text in _field_errors(at)
    assert not at.metric  # no run count for an invalid form
    _launch(at)
    assert "Nothing was launched" in _field_errors(at)
    assert list_runs(db) == []


def test_errors_are_listed_together(app, db: Engine) -> None:
    """A bad learning rate does not hide a subset smaller than a batch."""
    at = _set(app(), lr="-1", subset_size="10")
    errors = _field_errors(at)
    assert "must be > 0" in errors and "at least one batch" in errors


def test_a_data_set_absent_offline_is_refused_in_the_form(app, db: Engine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMCLR_OFFLINE", "1")
    monkeypatch.setenv("SIMCLR_DATA_ROOTS", str(tmp_path))
    at = app()
    at.selectbox(key="lf_dataset").set_value("cifar10").run()
    _set(at, data_dir=str(tmp_path), batch_size="64", subset_size="300")
    errors = _field_errors(at)
    assert "cannot be downloaded" in errors and f"put cifar-10-python.tar.gz into {tmp_path}/" in errors
    assert not errors.startswith("dataset: ")  # shown under its field, without a "field: " prefix
    _launch(at)
    assert list_runs(db) == []


def test_unknown_and_disallowed_folders(app, db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    (root / "set" / "train" / "a").mkdir(parents=True)
    (root / "set" / "test" / "a").mkdir(parents=True)
    for split in ("train", "test"):
        for i in range(70):
            (root / "set" / split / "a" / f"{i}.png").write_bytes(b"")
    monkeypatch.setenv("SIMCLR_DATA_ROOTS", str(root))
    at = app()
    at.selectbox(key="lf_dataset").set_value("imagefolder").run()
    _set(at, data_dir="/etc")
    assert "not under an allowed data folder" in _field_errors(at)
    _set(at, data_dir=str(root / "missing"))
    assert "does not exist" in _field_errors(at)
    _set(at, data_dir=str(root / "set" / ".." / ".." / "elsewhere"))  # `..` cannot step outside
    assert "not under an allowed data folder" in _field_errors(at)
    _launch(at)
    assert list_runs(db) == []
    _set(at, data_dir=str(root / "set"), batch_size="32", subset_size="")
    assert not at.error, _field_errors(at)
    _launch(at)
    [run] = list_runs(db)
    assert run["config"]["data_dir"] == str((root / "set").resolve())


def test_learning_rate_help_shows_the_rule_for_optimizer_and_batch(app, db: Engine) -> None:
    at = _set(app(), batch_size="128")
    assert any("0.3 x 128/256 = 0.15" in c for c in texts(at, "caption"))
    at.selectbox(key="lf_optimizer").set_value("adam").run()
    assert any("Adam: 3e-4" in c for c in texts(at, "caption"))
    assert "Adam: 3e-4" in at.text_input(key="lf_lr").help


def test_grid_counts_and_launches_one_sweep(app, db: Engine) -> None:
    at = _set(app(), subset_size="300", epochs="1")
    at.toggle(key="launch_grid_mode").set_value(True).run()
    at.text_input(key="lg_batch_size").set_value("64, 128").run()
    at.text_input(key="lg_seed").set_value("0,1,2").run()
    at.multiselect(key="lg_optimizer").set_value(["lars", "adam"]).run()
    assert not at.error, _field_errors(at)
    assert at.metric[0].value == "12"  # 2 batch sizes x 3 seeds x 2 optimizers
    assert len(at.dataframe[0].value) == 12  # the table of combinations with their estimates
    _launch(at)
    found = list_runs(db)
    assert len(found) == 12 and len({r["sweep_id"] for r in found}) == 1 and found[0]["sweep_id"]
    combos = {(r["batch_size"], r["config"]["seed"], r["optimizer"]) for r in found}
    assert combos == set(itertools.product((64, 128), (0, 1, 2), ("lars", "adam")))


def test_grid_with_an_impossible_combination_names_it_and_enqueues_nothing(app, db: Engine) -> None:
    at = app()
    at.toggle(key="launch_grid_mode").set_value(True).run()
    at.text_input(key="lg_subset_size").set_value("100, 300").run()
    at.text_input(key="lg_batch_size").set_value("64, 128").run()
    errors = _field_errors(at)
    assert "subset_size=100 batch_size=128" in errors and "at least one batch" in errors
    assert "subset_size=100 batch_size=64" not in errors  # that one is fine
    _launch(at)
    assert list_runs(db) == []


def test_baseline_subset_preset_makes_the_twelve_runs_of_the_seed_experiment(app, db: Engine) -> None:
    at = _set(app(), epochs="1")
    at.button(key="launch_preset_baseline-subset").click().run()
    assert at.toggle(key="launch_grid_mode").value is True
    assert at.metric[0].value == "12"
    _launch(at)
    found = list_runs(db)
    assert len(found) == 12
    assert {(r["encoder"], r["optimizer"], r["epochs"]) for r in found} == {("resnet18", "lars", 1)}
    assert {(r["subset_size"], r["batch_size"]) for r in found} == set(
        itertools.product((300, 500, 1000, 1500), (64, 128, 256)))


def test_form_values_survive_a_page_switch(app, db: Engine) -> None:
    at = _set(app(), batch_size="128")
    at.switch_page("screens/runs.py").run()
    at.switch_page("screens/launch.py").run()
    assert at.text_input(key="lf_batch_size").value == "128"


def test_augmentation_preview_draws_two_views_per_image(app, db: Engine) -> None:
    """Uses the engine's own BatchedAugment and data loader (imported only when asked)."""
    pytest.importorskip("torch")
    at = app()
    at.selectbox(key="lf_dataset").set_value("synthetic").run()
    at.button(key="launch_preview").click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    images = at.get("image")
    captions = [caption for img in images for caption in img.captions]
    assert len(images) == 18 and captions.count("view 1") == 6 and captions.count("view 2") == 6


def test_procfile_runs_web_without_local_worker_and_a_worker() -> None:
    lines = dict(line.split(": ", 1) for line in (PROJECT_ROOT / "Procfile").read_text().splitlines() if line)
    assert "SIMCLR_NO_LOCAL_WORKER=1" in lines["web"] and "streamlit run dashboard/app.py" in lines["web"]
    assert "--server.address ${SIMCLR_ADDRESS:-localhost}" in lines["web"] and "--server.fileWatcherType none" in lines["web"]
    assert lines["worker"] == "python -m engine worker"


def test_baseline_epochs_preset_says_why_and_its_gpu_time(app, db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # The preset trains on CIFAR-10, which is not on this machine: take its download as possible
    # (refusing an absent data set is test_a_data_set_absent_offline_is_refused_in_the_form's job).
    monkeypatch.setattr("db.datasets.can_download", lambda url: True)
    at = app()
    at.button(key="launch_preset_baseline-epochs").click().run()
    assert at.metric[0].value == "12"
    [info] = [m for m in texts(at, "info") if "data count = epochs" in m]
    assert "two presets" in info and "On one GPU: about" in info
    _launch(at)
    found = list_runs(db)
    assert {(r["dataset"], r["subset_size"]) for r in found} == {("cifar10", None)}
    assert {(r["epochs"], r["batch_size"]) for r in found} == set(
        itertools.product((300, 500, 1000, 1500), (64, 128, 256)))


def test_a_cpu_only_machine_starts_from_the_quick_preset_not_a_day_long_run(app, db: Engine,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import hardware
    from db.presets import PRESETS, QUICK_CPU

    monkeypatch.setattr(hardware, "machine_has_gpu", lambda: False)
    at = app()
    quick = PRESETS[QUICK_CPU].values
    assert at.selectbox(key="lf_optimizer").value == quick["optimizer"]
    assert at.text_input(key="lf_epochs").value == quick["epochs"]
    [estimate] = [m.value for m in at.metric if m.label == "Estimated time per run"]
    assert "h" not in estimate and int(estimate.split(" min")[0]) < 10, estimate
    _launch(at)
    [run] = list_runs(db)
    assert (run["config"]["stem"], run["config"]["optimizer"]) == (quick["stem"], quick["optimizer"])


def test_stl10_from_the_form_trains_at_96px_on_the_unlabeled_split(app, db: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("db.datasets.can_download", lambda url: True)  # STL-10 is not on this machine
    at = app()
    assert at.selectbox(key="lf_pretrain_split").value == ""  # "default": the data set's own split
    at.selectbox(key="lf_dataset").set_value("stl10").run()
    _launch(at)
    [run] = list_runs(db)
    assert (run["config"]["image_size"], run["config"]["pretrain_split"]) == (96, "unlabeled")


def test_data_folder_whose_train_or_test_lead_outside_the_roots_is_refused(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.data_roots import check_data_dir

    root, outside = tmp_path / "data", tmp_path / "private"
    (outside / "a").mkdir(parents=True)
    (root / "set" / "test").mkdir(parents=True)
    (root / "set" / "train").symlink_to(outside)
    monkeypatch.setenv("SIMCLR_DATA_ROOTS", str(root))
    folder, message = check_data_dir(str(root / "set"))
    assert folder is None and f"leads to {outside}" in message
    folder, message = check_data_dir("/" + "x" * 5000)  # a 5,000-character path: one sentence, no OSError
    assert folder is None and "at most 1024 characters" in message
