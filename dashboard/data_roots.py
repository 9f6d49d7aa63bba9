"""Where dataset folders typed into the launch form may live.

The form lets a browser name a folder that the workers will read. Without a fence anyone who can
reach the page could point a run at /etc or a home directory, so a folder must lie under one of
the allowed roots: SIMCLR_DATA_ROOTS (os.pathsep-separated), default the project's data/ and the
shared datasets folder next to the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from db.config import MAX_PATH_CHARS, PROJECT_ROOT


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


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_data_dir(text: str) -> tuple[Path | None, str | None]:
    """(resolved folder, None) when allowed and present, else (None, an error for the form).

    The folder's train/ and test/ are resolved too: a symlink inside an allowed folder must not
    lead the workers anywhere else."""
    if len(text) > MAX_PATH_CHARS:
        return None, f"a path of at most {MAX_PATH_CHARS} characters, please (got {len(text)})"
    roots = allowed_roots()
    try:
        path = resolve_data_dir(text)
        if not _inside(path, roots):
            return None, (f"{path} is not under an allowed data folder ({', '.join(str(r) for r in roots)}); "
                          "set SIMCLR_DATA_ROOTS to allow others")
        if not path.is_dir():
            return None, f"{path} does not exist or is not a folder"
        for split in ("train", "test"):
            target = (path / split).resolve()
            if not _inside(target, roots):
                return None, f"{path / split} leads to {target}, outside the allowed data folders"
    except (OSError, ValueError, RuntimeError) as e:  # NUL byte, symlink loop, a name the OS refuses
        return None, f"not a usable path: {e}"
    return path, None
