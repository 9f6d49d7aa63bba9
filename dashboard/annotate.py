"""Tags and note of one run on its page: shown as plain text, edited in a small form."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.common import get_engine
from db.annotations import AnnotationError, clean_note, parse_tags, set_note, set_tags


def show(run: dict[str, Any]) -> None:
    """Tags and note as plain text (st.text: never Markdown, whatever people typed)."""
    if run.get("tags"):
        st.text(f"Tags: {', '.join(run['tags'])}")
    if run.get("note"):
        st.text(run["note"])


def editor(run: dict[str, Any]) -> None:
    run_id = run["id"]
    with st.expander("Edit tags and note", expanded=False):
        with st.form(f"annotate_{run_id}", border=False):
            tags = st.text_input("Tags", value=", ".join(run.get("tags") or []), key=f"annotate_tags_{run_id}",
                                 help="comma- or space-separated; letters, digits and . _ : + -")
            note = st.text_area("Note", value=run.get("note") or "", key=f"annotate_note_{run_id}",
                                help="plain text, shown as typed")
            saved = st.form_submit_button("Save")
        if saved:
            try:
                # Both checked before either is written: a bad tag loses neither the tags nor the note.
                wanted, note = parse_tags(tags), clean_note(note)
                engine = get_engine()
                set_tags(engine, run_id, wanted)
                set_note(engine, run_id, note)
            except AnnotationError as e:
                st.error(f"Not saved: {e}")
            else:
                st.toast(f"Saved tags and note of run {run_id}")
                st.rerun()
