"""How artifacts record file paths, so that a work dir can be moved, copied or read from any folder.

A path inside the work dir is recorded relative to it (posix); a path outside it (a real dataset's
folder) stays absolute. A reader resolves a relative value against its own work dir. Stage dirs are
`WORKDIR/<stage>`, so a library writing into a stage dir takes the dir's parent as the work dir.
"""
from __future__ import annotations

import os
from pathlib import Path


def record_path(path: Path | str, workdir: Path | str) -> str:
    """`path` relative to `workdir` when it lies inside it, else absolute.

    Inside is judged on the path as written first (so `WORKDIR/data/tree`, a link to a dataset
    elsewhere, is recorded as `data/tree` and still found after a move), then with links resolved.
    """
    path, workdir = Path(path), Path(workdir)
    for p, w in ((Path(os.path.abspath(path)), Path(os.path.abspath(workdir))), (path.resolve(), workdir.resolve())):
        try:
            return p.relative_to(w).as_posix()
        except ValueError:
            continue
    return str(path.resolve())


def recorded_path(value: str | Path, workdir: Path | str) -> Path:
    """The path a recorded value names: absolute values as they are, relative ones below `workdir`."""
    p = Path(value)
    return p if p.is_absolute() else Path(workdir) / p


def existing_path(value: str | Path, workdir: Path | str, what: str) -> Path:
    """`recorded_path`, refused in one line when nothing is there (absolute: a folder outside the work dir)."""
    p = recorded_path(value, workdir)
    if not p.exists():
        where = "outside the work dir; was it moved or is it on another machine?" if Path(value).is_absolute() \
            else f"in work dir {workdir}"
        raise FileNotFoundError(f"{p}: {what} not found ({where})")
    return p
