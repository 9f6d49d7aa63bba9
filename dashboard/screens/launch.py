"""Launch: the run configuration form, grid mode, presets, augmentation preview.

A new form starts from the full recipe where a GPU is and from the measured quick CPU preset
where none is (dashboard.hardware decides, without torch). The preset buttons apply the named
presets of db/presets.py, the same ones as `submit --preset NAME`.

Plain widgets, not st.form: the learning-rate rule, the run count and the time estimate must
follow every change as it is made, and a st.form only reports on submit. Each rerun validates the
form (cheap: RunConfig only) and shows errors under the fields they are about; Launch enqueues
only a form without errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import hardware, live, nav, preview
from dashboard import launch_form as lf
from dashboard.common import fmt_duration, get_engine
from dashboard.estimate import estimate
from db import views
from db.config import ConfigError, RunConfig, config_fields, config_from_text
from db.presets import PRESETS, QUICK_CPU, Preset
from db.queue import live_workers
from db.sweep import MAX_NAME_CHARS, SweepError, enqueue, expand_grid

SINGLE, GRID = "lf_", "lg_"  # widget key prefixes: single-run values, grid values
GRID_MODE = "launch_grid_mode"
SAVED = "launch_saved"  # widget values kept across page switches (Streamlit drops those of unrendered widgets)
RESULT = "launch_result"


def _key(f: dataclasses.Field, grid: bool) -> str:
    return (GRID if grid and f.name in lf.GRID_FIELDS else SINGLE) + f.name


def _grid_value_from_single(f: dataclasses.Field) -> Any:
    single = st.session_state.get(SINGLE + f.name, lf.default_text(f))
    return [single] if "choices" in f.metadata else single


def _prepare_state() -> None:
    """Seed the widgets' session state before they are created (the only time it may be set)."""
    state = st.session_state
    saved: dict[str, Any] = state.setdefault(SAVED, {})
    clone = state.pop(nav.CLONE_KEY, None)
    if clone is not None:
        saved.clear()
        for name, text in lf.widget_values_for(clone).items():
            saved[SINGLE + name] = text
        saved[GRID_MODE] = False
        source = state.pop(nav.CLONE_FROM_KEY, None) or "the run"
        state[RESULT] = ("info", f"Cloned {source}: its configuration is loaded below; change it and launch.")
        for key in [k for k in state if str(k).startswith((SINGLE, GRID))]:
            del state[key]
        state[GRID_MODE] = False
    for key, value in saved.items():
        if key not in state:
            state[key] = value
    defaults = lf.form_defaults(gpu=_gpu())
    for f in config_fields():
        state.setdefault(SINGLE + f.name, defaults[f.name])
        if f.name in lf.GRID_FIELDS:
            state.setdefault(GRID + f.name, _grid_value_from_single(f))
    state.setdefault(GRID_MODE, False)


def _gpu() -> bool:
    return hardware.gpu_available([w["devices"] for w in live_workers(get_engine())])


def _apply_preset(name: str) -> None:
    """Set the fields the preset names (a grid preset switches to grid mode); others keep their values."""
    preset = PRESETS[name]
    state = st.session_state
    fields = {f.name: f for f in config_fields()}
    if preset.grid:
        if not state.get(GRID_MODE):
            state[GRID_MODE] = True
            for gname in lf.GRID_FIELDS:  # entering grid mode: grid boxes start from the single values
                state[GRID + gname] = _grid_value_from_single(fields[gname])
    for fname, text in preset.values.items():
        state[SINGLE + fname] = text
        if fname in lf.GRID_FIELDS:
            state[GRID + fname] = [text] if "choices" in fields[fname].metadata else text
    for fname, texts in preset.grid.items():
        state[GRID + fname] = list(texts) if "choices" in fields[fname].metadata else ", ".join(texts)
    runs = 1
    for texts in preset.grid.values():
        runs *= len(texts)
    gpu_time = None if name == QUICK_CPU else _gpu_estimate(preset)
    state[RESULT] = ("info", f"Preset \"{preset.label}\" ({runs} run{'s' if runs != 1 else ''}): {preset.why}"
                             + (f" On one GPU: about {gpu_time} in all (rough estimate)." if gpu_time else ""))


def _gpu_estimate(preset: Preset) -> str | None:
    """The preset's runs (with RunConfig's defaults elsewhere) on a GPU, one after another."""
    try:
        plan = expand_grid(preset.values, list(preset.grid.items()),
                           build=lambda v: config_from_text({**v, "device": "cuda"}))
    except (ConfigError, SweepError):
        return None
    history = views.run_timings(get_engine())
    seconds = [est.seconds for _, cfg in plan if (est := estimate(cfg, history, ["cuda"])) is not None]
    return fmt_duration(sum(seconds)) if seconds else None


def _enter_grid_mode() -> None:
    """The toggle's callback: the boxes of the mode being entered start from the other mode's values.

    Leaving grid mode, a grid field with one value keeps it, else its single box keeps what it had
    (or the default). Set here, before the widgets are drawn: a browser that had no single box on
    screen in grid mode would otherwise come back to an empty one ("expected an integer, got ''")."""
    state = st.session_state
    for f in config_fields():
        if f.name not in lf.GRID_FIELDS:
            continue
        if state.get(GRID_MODE):
            state[GRID + f.name] = _grid_value_from_single(f)
            continue
        grid = state.get(GRID + f.name)
        values = grid if isinstance(grid, list) else lf.parse_list(str(grid or ""))
        single = state.get(SINGLE + f.name) or state.get(SAVED, {}).get(SINGLE + f.name)
        state[SINGLE + f.name] = values[0] if len(values) == 1 else (single or lf.default_text(f))


def _ints(value: Any) -> list[int]:
    texts = value if isinstance(value, list) else lf.parse_list(str(value))
    return [int(t) for t in texts if str(t).strip().isdigit()]


def _field(f: dataclasses.Field, grid: bool, raw: dict[str, Any]) -> Any:
    key = _key(f, grid)
    label = lf.label(f)
    help_ = lf.help_text(f)
    choices = f.metadata.get("choices")
    if grid and f.name in lf.GRID_FIELDS:
        if choices:
            return st.multiselect(label, list(choices), key=key, help=help_)
        return st.text_input(f"{label} (comma-separated)", key=key, help=help_, placeholder="e.g. 64, 128, 256")
    if choices:
        # An optional choice (e.g. pretrain_split) offers "" too: the data set's own default.
        options = ["", *choices] if f.default is None else list(choices)
        return st.selectbox(label, options, key=key, help=help_, format_func=lambda v: v or "default")
    placeholder = "default" if f.default is None else None
    if f.name == "lr":
        # The optimizer and batch size fields come before this one, so their current values are known.
        defaults = RunConfig.__dataclass_fields__
        optimizers = raw.get("optimizer") or defaults["optimizer"].default
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        batches = _ints(raw.get("batch_size", "")) or [defaults["batch_size"].default]
        rule = lf.lr_caption(optimizers, batches)
        value = st.text_input(label, key=key, help=f"{help_} {rule}", placeholder="rule")
        st.caption(rule)
        return value
    if f.name == "subset_size":
        placeholder = "all images"
    return st.text_input(label, key=key, help=help_, placeholder=placeholder)


def _form(grid: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw every field; returns (raw values, error slot per field)."""
    raw: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    advanced: list[tuple[str, list[dataclasses.Field]]] = []
    for title, fields in lf.sections():
        basic = [f for f in fields if f.name not in lf.ADVANCED]
        extra = [f for f in fields if f.name in lf.ADVANCED]
        if extra:
            advanced.append((title, extra))
        if not basic:
            continue
        st.markdown(f"**{title}**")
        for f, col in zip(basic, _columns(len(basic))):
            with col:
                raw[f.name] = _field(f, grid, raw)
                slots[f.name] = st.empty()
    with st.expander("Advanced settings"):
        for title, fields in advanced:
            st.markdown(f"**{title}**")
            for f, col in zip(fields, _columns(len(fields))):
                with col:
                    raw[f.name] = _field(f, grid, raw)
                    slots[f.name] = st.empty()
    return raw, slots


def _columns(n: int) -> list[Any]:
    per_row = 4
    cols: list[Any] = []
    for start in range(0, n, per_row):
        cols.extend(st.columns(per_row)[: min(per_row, n - start)])
    return cols


def _save(grid: bool) -> None:
    saved = st.session_state[SAVED]
    for f in config_fields():
        for key in {SINGLE + f.name, GRID + f.name}:
            if key in st.session_state:
                saved[key] = st.session_state[key]
    saved[GRID_MODE] = grid


def _plan_table(plan: lf.Plan) -> tuple[pd.DataFrame, list[float]]:
    engine = get_engine()
    history = views.run_timings(engine)
    devices = [w["devices"] for w in live_workers(engine)]
    rows, seconds = [], []
    for combo, cfg in plan.runs:
        est = estimate(cfg, history, devices)
        seconds.append(est.seconds if est else float("nan"))
        rows.append({**{k: lf.value_text(v) or "all" for k, v in combo.items()},
                     "estimated time": fmt_duration(est.seconds) if est else "unknown",
                     "basis": est.basis if est else ""})
    return pd.DataFrame(rows), seconds


def _launch(plan: lf.Plan, name: str) -> None:
    if not plan.ok:
        st.session_state[RESULT] = ("error", "Nothing was launched: fix the errors marked above.")
        return
    try:
        sweep_id, queued = enqueue(get_engine(), plan.runs, sweep=len(plan.runs) > 1, name=name.strip() or None)
    except SweepError as e:
        st.session_state[RESULT] = ("error", f"Nothing was launched: {e}")
        return
    live.forget()  # the Runs page shows the new runs at once
    ids = [run_id for run_id, _ in queued]
    what = f"sweep {sweep_id}: {len(ids)} runs (ids {ids[0]}-{ids[-1]})" if sweep_id else f"run {ids[0]}"
    st.session_state[RESULT] = ("success", f"Queued {what}.")


def render() -> None:
    st.title("Launch")
    _prepare_state()
    grid = st.toggle("Grid mode", key=GRID_MODE, on_change=_enter_grid_mode,
                     help="Several values for encoder, optimizer, batch size, subset size, epochs and "
                          "seed: every combination becomes one run of a sweep.")
    st.caption("Presets set only the fields they name (they combine: e.g. a baseline preset, then the seed's "
               "code). The two baseline presets are the two readings of the seed experiment's table.")
    cols = st.columns(3)
    for i, preset in enumerate(PRESETS.values()):
        cols[i % 3].button(preset.label, on_click=_apply_preset, args=(preset.name,), key=f"launch_preset_{preset.name}",
                   help=f"{preset.why} (CLI: --preset {preset.name})", use_container_width=True)

    raw, slots = _form(grid)
    name = st.text_input("Run name (optional)", key="launch_name", max_chars=MAX_NAME_CHARS,
                         help="A sweep's runs get this name plus their grid values.")
    _save(grid)

    plan = lf.build_plan(raw, grid)
    for field_name, messages in plan.errors.items():
        target = slots.get(field_name)
        text = "\n\n".join(messages)
        if target is not None:
            target.error(text)
        else:
            st.error(text)

    if plan.ok:
        table, seconds = _plan_table(plan)
        known = [s for s in seconds if s == s]
        c1, c2, c3 = st.columns(3)
        c1.metric("Runs", len(plan.runs))
        if known:
            low, high = fmt_duration(min(known)), fmt_duration(max(known))
            per_run = low if low == high else f"{low} - {high}"  # compare as shown, not as floats
            c2.metric("Estimated time per run", per_run)
            c3.metric("All runs, one after another", fmt_duration(sum(known)))
        if grid and len(plan.runs) > 1:
            st.dataframe(table, hide_index=True, key="launch_plan_table")
        elif len(table):
            st.caption(f"Estimate basis: {table['basis'].iloc[0]}")

    st.button("Launch", type="primary", key="launch_button", on_click=_launch, args=(plan, name),
              help="Enqueue the run(s); a worker picks them up.")
    result = st.session_state.pop(RESULT, None)
    if result:
        kind, message = result
        getattr(st, kind)(message)
        if kind == "success":
            st.page_link(nav.RUNS.path, label="Watch on the Runs page", icon=":material/table_rows:")

    with st.expander("Augmentation preview"):
        st.caption("A few test images of the chosen dataset, each with two views drawn by the engine's "
                   "BatchedAugment at the chosen image size and jitter strength.")
        if not plan.runs:
            st.info("Fix the form's errors to preview its augmentation.")
        elif st.button("Draw views", key="launch_preview"):
            try:
                preview.show(preview.draw(plan.runs[0][1].to_dict()))
            except Exception as e:  # a preview failing (missing data, engine not installed) must not break the form
                st.error(f"Could not draw a preview: {e}")


if __name__ == "__main__":
    render()
