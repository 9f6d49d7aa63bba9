"""Tags and a free-text note on runs: what people add to find and explain runs afterwards.

Both the CLI (`python -m engine tag | note`) and the run page write through here, so the rules
for a valid tag live in one place. Tags are stored as a sorted list of distinct strings.
"""

from __future__ import annotations

import re
from typing import Iterable

from sqlalchemy import Engine, select, update

from db.models import runs
from db.session import write_tx

MAX_TAG_LEN = 40
MAX_NOTE_LEN = 10_000
# Letters, digits and a few separators: a tag is a word to filter by, and it must survive a URL
# (?tag=...) and a comma-separated text box unchanged.
_TAG = re.compile(r"^[\w.:+-]+$")


class AnnotationError(ValueError):
    """A bad tag or note, or an unknown run; the message says which and why."""


def clean_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag:
        raise AnnotationError("a tag cannot be empty")
    if len(tag) > MAX_TAG_LEN:
        raise AnnotationError(f"tag {tag[:20]!r}... is longer than {MAX_TAG_LEN} characters")
    if not _TAG.match(tag):
        raise AnnotationError(f"tag {tag!r} may only hold letters, digits and . _ : + - (no spaces or commas)")
    return tag


def clean_note(note: str) -> str:
    note = note.strip()
    if len(note) > MAX_NOTE_LEN:
        raise AnnotationError(f"a note may hold at most {MAX_NOTE_LEN} characters (this one has {len(note)})")
    return note


def parse_tags(text: str) -> list[str]:
    """'a, b c' -> ['a', 'b', 'c']: commas or spaces separate tags."""
    return sorted({clean_tag(t) for t in re.split(r"[,\s]+", text) if t.strip()})


def update_tags(engine: Engine, run_id: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
    """Add and remove tags of one run in one transaction; returns its tags afterwards."""
    add = {clean_tag(t) for t in add}
    remove = {t.strip() for t in remove}
    with write_tx(engine) as conn:
        found = conn.execute(select(runs.c.tags).where(runs.c.id == run_id)).first()
        if found is None:
            raise AnnotationError(f"no run with id {run_id}")
        tags = sorted((set(found.tags or []) | add) - remove)
        conn.execute(update(runs).where(runs.c.id == run_id).values(tags=tags or None))
    return tags


def set_tags(engine: Engine, run_id: int, tags: Iterable[str]) -> list[str]:
    """Replace a run's tags (the run page's editor sends the whole list)."""
    wanted = sorted({clean_tag(t) for t in tags})
    with write_tx(engine) as conn:
        if conn.execute(update(runs).where(runs.c.id == run_id).values(tags=wanted or None)).rowcount == 0:
            raise AnnotationError(f"no run with id {run_id}")
    return wanted


def set_note(engine: Engine, run_id: int, note: str) -> str | None:
    """Replace a run's note; blank text clears it."""
    note = clean_note(note)
    with write_tx(engine) as conn:
        if conn.execute(update(runs).where(runs.c.id == run_id).values(note=note or None)).rowcount == 0:
            raise AnnotationError(f"no run with id {run_id}")
    return note or None
