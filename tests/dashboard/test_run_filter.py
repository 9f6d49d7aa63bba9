"""Find runs: the filter line, tags and sort order, and the URL that restores them."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from dashboard.run_filter import Clause, FilterError, View, apply, parse
from db.annotations import update_tags
from tests.dashboard.dash_helpers import add_run, texts


def run(i: int, **values) -> dict:  # noqa: ANN003
    config = {k: values.pop(k) for k in ("batch_size", "optimizer") if k in values}
    return {"id": i, "name": values.pop("name", f"r{i}"), "display_status": "completed", "config": config,
            "tags": values.pop("tags", None), **values}


def test_parse_and_apply_clauses_on_config_results_and_meta() -> None:
    runs = [run(1, batch_size=64, optimizer="lars", linear_top1=0.30), run(2, batch_size=256, optimizer="adam",
            linear_top1=0.45, tags=["good"]), run(3, batch_size=128, optimizer="lars", linear_top1=None, name="Base-3")]
    assert parse("batch_size>=128, optimizer=LARS") == [Clause("batch_size", ">=", "128"),
                                                        Clause("optimizer", "=", "LARS")]
    ids = lambda view: [r["id"] for r in apply(runs, view)]  # noqa: E731
    assert ids(View(clauses=tuple(parse("batch_size>=128 optimizer=lars")))) == [3]
    assert ids(View(clauses=tuple(parse("linear_top1>0.35")))) == [2]
    assert ids(View(clauses=tuple(parse("linear_top1=none")))) == [3]
    assert ids(View(clauses=tuple(parse("name~base")))) == [3]
    assert ids(View(clauses=tuple(parse("epochs=100")))) == [1, 2, 3][::-1]  # the default applies to unset fields
    assert ids(View(tags=("good",))) == [2]
    assert ids(View(sort="linear_top1", descending=True)) == [2, 1, 3]  # unset last, either way
    assert ids(View(sort="linear_top1", descending=False)) == [1, 2, 3]
    assert ids(View(sort="optimizer", descending=False)) == [2, 1, 3]


@pytest.mark.parametrize("text,needle", [
    ("batchsize>=128", "unknown field 'batchsize'; did you mean batch_size"),
    ("batch_size>>1", "cannot read"),
    ("just words", "cannot read 'just words'"),
])
def test_bad_filters_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(FilterError, match=needle):
        parse(text)


def test_a_shared_link_restores_the_runs_view_and_changes_update_it(app, db: Engine) -> None:
    small = add_run(db, status="completed", batch_size=64, linear_top1=0.2)
    big_a = add_run(db, status="completed", batch_size=128, linear_top1=0.5)
    big_b = add_run(db, status="completed", batch_size=256, linear_top1=0.4)
    add_run(db, status="completed", batch_size=256, linear_top1=0.9)  # untagged
    for r in (small, big_a, big_b):
        update_tags(db, r, add=["keep"])
    at = app("runs", q="batch_size>=128", tags="keep", sort="linear_top1")
    assert at.dataframe[0].value["id"].tolist() == [big_a, big_b]
    assert at.dataframe[0].value["tags"].tolist() == ["keep", "keep"]
    assert at.text_input(key="runs_query").value == "batch_size>=128"
    at.toggle(key="runs_descending").set_value(False).run()
    assert at.dataframe[0].value["id"].tolist() == [big_b, big_a]
    assert at.query_params["desc"] in ("0", ["0"]) and "batch_size" in str(at.query_params["q"])
    at.text_input(key="runs_query").set_value("batchsize>1").run()
    assert any("Filter not applied" in e and "batch_size" in e for e in texts(at, "error"))
