"""Content hashes, manifests, atomic writes and the work-dir lock behind the stage cache."""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

MANIFEST = "manifest.json"
ITEM_RECORD = "item.json"


def hash_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (dataclasses allowed)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """Hash of file names and contents; names are taken relative to `root` when given."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        name = str(p.relative_to(root)) if root else p.name
        h.update(name.encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """Content hash of one file; a symlink is digested by its target, not followed."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_symlink():
        h.update(b"link:" + os.readlink(path).encode())
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def file_digests(root: Path, exclude: Iterable[str] = (), skip_dirs: Iterable[str] = ()) -> dict[str, str]:
    """{relative path: content digest} of every file under `root` (symlinks not followed).

    `exclude` holds glob patterns of relative paths left out (logs and timings that change on every
    run without changing what downstream stages read); `skip_dirs` names top-level dirs left out
    (per-item dirs, whose digests are recorded in their item records). Hidden entries (temporary
    dirs, the lock) and the stage's own records are never part of it.
    """
    root = Path(root)
    exclude, skip = tuple(exclude), set(skip_dirs)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (rel_dir == Path(".") and d in skip)]
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        for name in sorted(filenames + links):
            rel = (rel_dir / name).as_posix()
            if name.startswith(".") or rel in (MANIFEST, ITEM_RECORD) or any(fnmatch.fnmatch(rel, g) for g in exclude):
                continue
            out[rel] = file_digest(Path(dirpath) / name)
    return out


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or half-written."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `path` (file or dir) in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = path.parent / f".old-{path.name}-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def clear_stale_tmp(directory: Path) -> None:
    """Remove leftovers of runs that were killed before their rename."""
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if p.name.startswith((".tmp-", ".old-")) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            _remove(p)


def skylink_version() -> str:
    """The installed SkyLink version, or pyproject.toml's when run from a source tree."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("skylink")
    import re

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    m = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
    return m.group(1) if m else "unknown"


def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["skylink", "numpy", "torch", "pycolmap", "open3d-cpu", "open3d", "faiss-cpu", "opencv-python-headless", "trimesh"]
    out = {"skylink": skylink_version()}
    for n in names[1:]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


class LockError(RuntimeError):
    pass


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """One run per work dir. The lock holds the owner's pid; a lock of a dead process is taken over."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lock = workdir / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
            except (ValueError, FileNotFoundError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise LockError(f"{workdir} is in use by another skylink run (pid {pid}); wait for it or stop it")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
