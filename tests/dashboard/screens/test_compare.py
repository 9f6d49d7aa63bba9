"""Compare: the results table (the baseline experiment's layout) against known numbers, the baseline's
published numbers beside ours, row keys, probes, config diff, sweeps, curves and CSV."""

from __future__ import annotations

import io

import pandas as pd
from sqlalchemy import Engine

from dashboard import results
from db.queries import get_run
from tests.dashboard.dash_helpers import add_metrics, add_run

# Two cells of the baseline experiment's table (db/baseline_experiment.json) and a spread over three
# seeds around them: mean exactly the baseline's number, sample std exactly the spread.
BASELINE_CELLS = {(300, 64): (0.629, 0.7103), (1500, 256): (0.3936, 0.8362)}
SPREAD = 0.01
BASELINE_COLUMNS = ["baseline loss", "baseline accuracy", "Δ loss (ours - baseline)", "Δ accuracy (ours - baseline)"]


def _baseline_runs(db: Engine, sweep_id: str = "sweep-seed", data_field: str = "subset_size",
                   shift: float = 0.0) -> list[int]:
    ids = []
    for (count, batch), (loss, acc) in BASELINE_CELLS.items():
        for seed, offset in enumerate((-SPREAD, 0.0, SPREAD)):
            ids.append(add_run(db, status="completed", sweep_id=sweep_id, batch_size=batch, seed=seed,
                               linear_loss=loss + offset + shift, linear_top1=acc + offset - shift,
                               **{data_field: count}))
    return ids


def test_baseline_layout_table_has_mean_and_std_over_seeds_beside_the_published_numbers(app, db: Engine) -> None:
    _baseline_runs(db)
    add_run(db, status="completed", encoder="resnet50", linear_loss=0.5, linear_top1=0.6)  # its own table
    at = app("compare")  # by default: the completed runs
    tables = [t.value.reset_index() for t in at.table]
    assert len(tables) == 2
    seed = next(t for t in tables if len(t) == 2)
    assert list(seed.columns) == ["data subset", "batch", "loss", "accuracy", "seeds", *BASELINE_COLUMNS]
    rows = {(r["data subset"], r["batch"]): r for _, r in seed.iterrows()}
    assert rows[("300", "64")]["baseline accuracy"] == "0.7103" and rows[("300", "64")]["Δ loss (ours - baseline)"] == "+0.0000"
    assert rows[("300", "64")]["loss"] == "0.6290 ± 0.0100"
    assert rows[("300", "64")]["accuracy"] == "0.7103 ± 0.0100"
    assert rows[("1500", "256")]["loss"] == "0.3936 ± 0.0100"
    assert rows[("1500", "256")]["accuracy"] == "0.8362 ± 0.0100"
    assert list(seed["seeds"]) == [3, 3]
    assert any("resnet18 + lars" in m.value for m in at.markdown)
    assert any("resnet50 + lars" in m.value for m in at.markdown)
    single = next(t for t in tables if len(t) == 1)
    assert single.iloc[0]["accuracy"] == "0.6000"  # one seed: no ± part
    assert "baseline loss" not in single.columns  # resnet50: not the baseline's layout
    assert any("SimCLR 학습결과" in c.value for c in at.caption)  # the baseline's source is cited


def test_an_epochs_by_batch_sweep_gets_the_baseline_layout_with_differences(app, db: Engine) -> None:
    ids = _baseline_runs(db, sweep_id="sweep-epochs", data_field="epochs", shift=0.05)
    at = app("compare")
    at.radio(key="cmp_mode").set_value("Sweep").run()
    at.selectbox(key="cmp_sweep").set_value("sweep-epochs").run()
    [table] = [t.value.reset_index() for t in at.table]
    assert list(table.columns) == ["epochs", "batch", "loss", "accuracy", "seeds", *BASELINE_COLUMNS]
    rows = {(r["epochs"], r["batch"]): r for _, r in table.iterrows()}
    assert rows[("1500", "256")]["Δ accuracy (ours - baseline)"] == "-0.0500"
    assert rows[("1500", "256")]["Δ loss (ours - baseline)"] == "+0.0500"
    numbers = results.result_tables([get_run(db, i) for i in ids])[0].numbers
    assert numbers["accuracy_difference"].round(6).tolist() == [-0.05, -0.05]


def test_row_keys_come_from_the_varying_fields_and_the_others_split_tables(app, db: Engine) -> None:
    ids = [add_run(db, status="completed", epochs=e, batch_size=b, linear_loss=1.0, linear_top1=0.5)
           for e in (1, 5) for b in (32, 64)]
    runs = [get_run(db, i) for i in ids]
    assert results.default_row_keys(runs) == ["epochs", "batch_size"]
    assert [len(t.numbers) for t in results.result_tables(runs)] == [4]
    by_batch = results.result_tables(runs, ["batch_size"])
    assert sorted(t.title for t in by_batch) == ["resnet18 + lars, probe lbfgs, epochs=1",
                                                 "resnet18 + lars, probe lbfgs, epochs=5"]
    at = app("compare")
    at.multiselect(key="cmp_row_keys").set_value(["batch_size"]).run()
    assert len(at.table) == 2 and list(at.table[0].value.reset_index().columns)[0] == "batch"


def test_mixed_probes_warn_and_never_share_a_table(app, db: Engine) -> None:
    add_run(db, status="completed", probe="lbfgs", linear_loss=1.0, linear_top1=0.5)
    add_run(db, status="completed", probe="seed", linear_loss=1.1, linear_top1=0.45)
    at = app("compare")
    assert any("probed differently (lbfgs, seed)" in w.value for w in at.warning)
    assert sorted(m.value for m in at.markdown if m.value.startswith("**resnet18")) == [
        "**resnet18 + lars, probe lbfgs**", "**resnet18 + lars, probe seed**"]


def test_sweep_mode_and_config_diff_shows_only_differing_fields(app, db: Engine) -> None:
    ids = _baseline_runs(db, sweep_id="sweep-x")
    add_run(db, status="completed", linear_loss=1.0, linear_top1=0.1)  # not in the sweep
    at = app("compare")
    at.radio(key="cmp_mode").set_value("Sweep").run()
    at.selectbox(key="cmp_sweep").set_value("sweep-x").run()
    diff = at.dataframe[-1].value  # one row per run (long names in one wide column), one column per field
    assert set(diff.columns) == {"subset_size", "batch_size", "seed"}
    assert len(diff.index) == len(ids)


def test_deep_link_runs_and_csv_of_the_table(app, db: Engine) -> None:
    ids = _baseline_runs(db)
    at = app("compare", runs=",".join(map(str, ids[:3])))
    assert sorted(at.multiselect(key="cmp_runs").value) == sorted(ids[:3])
    csv = pd.read_csv(io.StringIO(results.tables_csv(results.result_tables([get_run(db, i) for i in ids]))))
    row = csv[(csv["subset_size"] == 300) & (csv["batch_size"] == 64)].iloc[0]
    assert abs(row["accuracy_mean"] - 0.7103) < 1e-9 and abs(row["accuracy_std"] - SPREAD) < 1e-9 and row["n"] == 3
    assert row["baseline_accuracy"] == 0.7103 and row["probe"] == "lbfgs"


def test_curves_with_every_x_axis_smoothing_and_log_scale(app, db: Engine) -> None:
    a = add_run(db, status="completed", batch_size=64)
    b = add_run(db, status="completed", batch_size=128)
    for run in (a, b):
        add_metrics(db, run, "train/loss", [5.0 / (i + 1) for i in range(300)])
    at = app("compare", runs=f"{a},{b}")
    for x in ("step", "epoch", "images seen", "wall time"):
        at.radio(key="cmp_x").set_value(x).run()
        assert not at.exception
    at.slider(key="cmp_smooth").set_value(0.9).run()
    at.toggle(key="cmp_log").set_value(True).run()
    assert not at.exception
    chart = at.get("plotly_chart")[0]
    assert '"type":"log"' in chart.proto.spec.replace(" ", "")


def test_curves_download_is_prepared_eagerly_and_dropped_when_the_choice_changes(app, db: Engine) -> None:
    a = add_run(db, status="completed")
    add_metrics(db, a, "train/loss", [3.0, 2.0, 1.0])
    add_metrics(db, a, "train/lr", [0.1, 0.2, 0.3])
    at = app("compare", runs=str(a))
    assert not at.get("download_button") or all("curves" not in b.label for b in at.get("download_button"))
    at.button(key="cmp_curves_csv_prepare").click().run()
    [held] = [b for b in at.get("download_button") if "curves" in b.label]
    signature, data = at.session_state["cmp_curves_csv"]
    text = data.decode()
    assert text.splitlines()[0].startswith("run,run_id,name,step") and len(text.splitlines()) == 4
    assert "train/loss" in text and "train/lr" not in text
    at.selectbox(key="cmp_metric").set_value("train/lr").run()
    assert all("curves" not in b.label for b in at.get("download_button"))  # prepared for the other metric: gone
