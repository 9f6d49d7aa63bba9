"""Where dataset folders typed into the launch form may live.

The form lets a browser name a folder that the workers will read. Without a fence anyone who can
reach the page could point a run at /etc or a home directory, so a folder must lie under one of
the allowed roots: SIMCLR_DATA_ROOTS (os.pathsep-separated), default the project's data/ and the
shared datasets folder next to the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from db.config import PROJECT_ROOT


def allowed_roots() -> list[Path]:
    env = os.environ.get("SIMCLR_DATA_ROOTS")
    if env:
        return [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p.strip()]
    return [(PROJECT_ROOT / "data").resolve(), (PROJECT_ROOT.parent / "shared" / "datasets").resolve()]


def resolve_data_dir(text: str) -> Path:
    """The folder a typed path means: relative paths are taken from the project folder (where the
    workers run), and symlinks and `..` are resolved so that they cannot step outside a root."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path.resolve()


def check_data_dir(text: str) -> tuple[Path | None, str | None]:
    """(resolved folder, None) when allowed and present, else (None, an error for the form)."""
    path = resolve_data_dir(text)
    roots = allowed_roots()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        return None, (f"{path} is not under an allowed data folder ({', '.join(str(r) for r in roots)}); "
                      "set SIMCLR_DATA_ROOTS to allow others")
    if not path.is_dir():
        return None, f"{path} does not exist or is not a folder"
    return path, None
