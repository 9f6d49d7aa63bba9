"""`python -m engine tag | note`: annotate runs from the command line (the run page does the same)."""

from __future__ import annotations

import argparse
import sys

from db.annotations import AnnotationError, set_note, update_tags
from db.session import make_engine


def add_annotation_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tag", help="add or remove tags of a run",
                              description="Tags hold letters, digits and . _ : + - ; filter by them on the Runs page.")
    p.add_argument("run_id", type=int, metavar="RUN_ID")
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="add this tag (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="remove this tag (repeatable)")
    p.set_defaults(func=cmd_tag)

    p = subparsers.add_parser("note", help="set the free-text note of a run (\"\" clears it)")
    p.add_argument("run_id", type=int, metavar="RUN_ID")
    p.add_argument("text", help="the note (plain text)")
    p.set_defaults(func=cmd_note)


def cmd_tag(args: argparse.Namespace) -> int:
    try:
        tags = update_tags(make_engine(args.db), args.run_id, add=args.add, remove=args.remove)
    except AnnotationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run {args.run_id} tags: {', '.join(tags) if tags else '(none)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    try:
        note = set_note(make_engine(args.db), args.run_id, args.text)
    except AnnotationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run {args.run_id} note: {'set' if note else 'cleared'}")
    return 0
