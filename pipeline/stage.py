"""Stages as `(inputs, config) -> artifact dir` with a manifest, a cache key and per-item resume.

A stage's key is the hash of its own config sections and the output digests its inputs' manifests
record (what those stages produced, not how they were asked to produce it), so a forced upstream
re-run that changes its outputs invalidates what reads them, and one that reproduces the same bytes
does not. A finished stage with the same key is skipped. Per-item work (one building) is written to
a temporary dir and renamed into place with an `item.json` record holding the digest of each file it
wrote, so a killed run resumes with the items it had finished and never mistakes a half-written item
for a finished one, and downstream per-item keys take in exactly the upstream item they read.
"""
from __future__ import annotations

import dataclasses

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.cache import (
    ITEM_RECORD,
    MANIFEST,
    _remove,
    atomic_write_json,
    clear_stale_tmp,
    file_digests,
    hash_json,
    package_versions,
    read_json,
    skylink_version,
)
from pipeline.config import Config, section_dict
from pipeline.log import log

# Bump to invalidate every cache when the meaning of artifacts changes.
CACHE_VERSION = 1


class StageError(RuntimeError):
    pass


@dataclass
class Stage:
    name: str
    sections: tuple[str, ...]
    needs: tuple[str, ...]
    run: Callable[["StageContext"], dict | None]
    help: str = ""
    # Extra cache-key content beyond config and inputs (e.g. a fingerprint of an external folder).
    fingerprint: Callable[[Config], dict] | None = None
    # True when the stage leaves its outputs untouched until it calls ctx.begin_writing() (it
    # checks its inputs first), so a run that fails early keeps the finished manifest valid.
    writes_late: bool = False
    # Glob patterns (relative to the stage dir) of outputs left out of the stage's digest: logs,
    # timings and resume state that change on every run without changing what downstream reads.
    volatile: tuple[str, ...] = ()


@dataclass
class StageContext:
    stage: Stage
    workdir: Path
    config: Config
    key: str
    input_keys: dict[str, str]
    force: bool = False
    items: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    old_manifest: dict | None = None

    def begin_writing(self) -> None:
        """From here on the dir may mix old and new outputs: never let it pass as finished."""
        old = self.old_manifest
        if old and old.get("finished"):
            atomic_write_json(self.out / MANIFEST, old | {"finished": False})
            self.old_manifest = old | {"finished": False}

    @property
    def out(self) -> Path:
        return self.workdir / self.stage.name

    @property
    def section(self) -> Any:
        return getattr(self.config, self.stage.sections[0])

    @property
    def log(self) -> logging.Logger:
        return log

    @property
    def workers(self) -> int:
        return max(1, self.config.executor.workers)

    @property
    def executor(self) -> str:
        return self.config.executor.kind

    def input(self, name: str) -> Path:
        if name not in self.stage.needs:
            raise StageError(f"stage {self.stage.name} does not declare {name!r} as an input")
        return self.workdir / name

    def manifest(self, name: str) -> dict:
        m = read_json(self.input(name) / MANIFEST)
        if m is None:
            raise StageError(f"{self.input(name) / MANIFEST}: missing; run stage {name!r} first")
        return m

    def ok_items(self, name: str) -> list[str]:
        """Ids of an input stage's items that finished ok."""
        items = self.manifest(name).get("items", {})
        return sorted(k for k, v in items.items() if v.get("status") == "ok")

    def item_digest(self, name: str, item_id: str, files: list[str] | None = None) -> str:
        """Digest of what an input stage's item holds (only `files`, relative to the item dir, when
        given), read from the digests its `item.json` recorded when the item was written; hashed
        afresh only for an item written by a SkyLink that recorded none."""
        item_dir = self.input(name) / item_id
        digests = (read_json(item_dir / ITEM_RECORD) or {}).get("files")
        if digests is None:
            digests = file_digests(item_dir)
        if files is not None:
            missing = [f for f in files if f not in digests]
            if missing:
                raise StageError(f"{item_dir}: missing {', '.join(missing)}")
            digests = {f: digests[f] for f in files}
        return hash_json(digests)

    def run_items(self, items: dict[str, str], fn: Callable[..., dict | None], desc: str | None = None, **kwargs) -> dict[str, dict]:
        """Run `fn(item_id, out_tmp, **kwargs)` for every item whose inputs or config changed."""
        from pipeline.executors import map_items

        section_key = hash_json({s: section_dict(self.config, s) for s in self.stage.sections} | {"v": CACHE_VERSION})
        self.out.mkdir(parents=True, exist_ok=True)
        clear_stale_tmp(self.out)
        todo: list[tuple[str, str]] = []
        counts = {"new": 0, "changed": 0, "cached": 0, "failed": 0, "ok": 0}
        previous = (read_json(self.out / MANIFEST) or {}).get("items", {})
        for item_id, input_hash in sorted(items.items()):
            item_key = hash_json([section_key, input_hash])
            rec = read_json(self.out / item_id / ITEM_RECORD)
            if not self.force and rec and rec.get("key") == item_key and rec.get("status") == "ok":
                self.items[item_id] = rec if "digest" in rec else _add_digests(self.out / item_id, rec)
                counts["cached"] += 1
                continue
            if rec or item_id in previous:
                counts["changed"] += 1
            else:
                counts["new"] += 1
            todo.append((item_id, item_key))
        # Items that left the inputs leave the cache too, so downstream never sees them.
        gone = [p for p in self.out.iterdir()
                if p.is_dir() and not p.name.startswith(".") and p.name not in items and (p / ITEM_RECORD).exists()]
        if todo or gone:
            self.begin_writing()
        for p in gone:
            _remove(p)
        if todo:
            log.info("%s: %d to compute, %d cached", self.stage.name, len(todo), counts["cached"])
        for item_id, rec in map_items(
            _run_one, todo, fn=fn, out_root=self.out, kwargs=kwargs,
            executor=self.executor, workers=self.workers, ray_address=self.config.executor.ray_address,
            desc=desc or self.stage.name,
        ):
            self.items[item_id] = rec
            if rec["status"] != "ok":
                counts["failed"] += 1
                log.warning("%s: %s failed: %s", self.stage.name, item_id, rec.get("reason"))
        counts["ok"] = sum(1 for r in self.items.values() if r.get("status") == "ok")
        self.counts = counts
        return self.items


def _run_one(item_id: str, item_key: str, fn: Callable[..., dict | None], out_root: Path, kwargs: dict) -> dict:
    """Compute one item into a temporary dir and rename it into place (module-level: picklable)."""
    import os

    final = out_root / item_id
    tmp = out_root / f".tmp-{item_id}-{os.getpid()}"
    _remove(tmp)
    tmp.mkdir(parents=True)
    t0 = time.time()
    try:
        info = fn(item_id, tmp, **kwargs) or {}
    except Exception as e:  # one bad building must not stop the others
        _remove(tmp)
        reason = f"{type(e).__name__}: {e}".strip()
        log.debug("%s", traceback.format_exc())
        return {"status": "failed", "reason": reason.splitlines()[0], "key": item_key, "seconds": round(time.time() - t0, 3)}
    rec = {"status": "ok", "key": item_key, "seconds": round(time.time() - t0, 3)} | _jsonable(info)
    # Digested here, once, while the files are fresh: downstream keys read these instead of rehashing.
    rec = _add_digests(tmp, rec, write=False)
    atomic_write_json(tmp / ITEM_RECORD, rec)
    if final.exists():
        old = out_root / f".old-{item_id}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)
    return rec


def _add_digests(item_dir: Path, rec: dict, write: bool = True) -> dict:
    """`rec` with the item's per-file digests (`files`) and their digest (`digest`)."""
    files = file_digests(item_dir)
    rec = rec | {"files": files, "digest": hash_json(files)}
    if write:  # an item of an older SkyLink: digested once, then read like the others
        atomic_write_json(item_dir / ITEM_RECORD, rec)
    return rec


def output_digest(stage: Stage, config: Config, out: Path, items: dict[str, dict]) -> str:
    """Digest of everything a finished stage produced: its items' digests, the other files in its
    dir (volatile ones left out) and its external fingerprint (a linked dataset folder)."""
    return hash_json({
        "items": {k: (v.get("digest") if v.get("status") == "ok" else "failed") for k, v in sorted(items.items())},
        "files": file_digests(out, exclude=stage.volatile, skip_dirs=items),
        "external": stage.fingerprint(config) if stage.fingerprint else {},
    })


def _jsonable(info: dict) -> dict:
    import json

    return json.loads(json.dumps(info, default=str))


def stage_key(stage: Stage, config: Config, input_keys: dict[str, str]) -> str:
    """`input_keys` are the inputs' output digests (`input_keys_of`)."""
    return hash_json({
        "stage": stage.name,
        "sections": {s: section_dict(config, s) for s in stage.sections},
        "inputs": input_keys,
        "external": stage.fingerprint(config) if stage.fingerprint else {},
        "v": CACHE_VERSION,
    })


def input_keys_of(stage: Stage, workdir: Path) -> dict[str, str]:
    """Each input's output digest, read from its manifest (nothing is hashed: a cached run stays fast).

    A manifest of a SkyLink that recorded no digest stands for its outputs by its key, so an upgrade
    alone recomputes nothing.
    """
    keys = {}
    for need in stage.needs:
        m = read_json(workdir / need / MANIFEST)
        if not m or not m.get("finished"):
            raise StageError(f"stage {stage.name!r} needs {need!r}, which has not finished in {workdir}; run `skylink {need}` first")
        keys[need] = m.get("digest") or m["key"]
    return keys


def built_by_other_version(manifest: dict) -> str | None:
    """The SkyLink version that built a manifest when it is not this one (None when it is)."""
    built = (manifest.get("versions") or {}).get("skylink") or "unknown"
    return None if built == skylink_version() else built


def is_cached(stage: Stage, config: Config, workdir: Path) -> bool:
    try:
        key = stage_key(stage, config, input_keys_of(stage, workdir))
    except StageError:
        return False
    m = read_json(workdir / stage.name / MANIFEST)
    return bool(m and m.get("finished") and m.get("key") == key)


def run_stage(stage: Stage, config: Config, workdir: Path, force: bool = False) -> dict:
    """Run one stage unless its key matches a finished manifest. Returns the manifest."""
    workdir = Path(workdir)
    input_keys = input_keys_of(stage, workdir)
    key = stage_key(stage, config, input_keys)
    out = workdir / stage.name
    old = read_json(out / MANIFEST)
    if not force and old and old.get("finished") and old.get("key") == key:
        log.info("%s: cached (key %s)", stage.name, key)
        other = built_by_other_version(old)
        if other:  # a warning only: the user decides whether to --force it
            log.warning("%s: cached by SkyLink %s (this is %s); its outputs are kept, use --force %s to rebuild them",
                        stage.name, other, skylink_version(), stage.name)
        return old
    out.mkdir(parents=True, exist_ok=True)
    clear_stale_tmp(out)
    ctx = StageContext(stage=stage, workdir=workdir, config=config, key=key, input_keys=input_keys, force=force,
                       old_manifest=old)
    if not stage.writes_late:
        ctx.begin_writing()
    log.info("%s: running", stage.name)
    t0 = time.time()
    summary = stage.run(ctx) or {}
    seconds = time.time() - t0
    if ctx.items and ctx.counts.get("ok", 0) == 0:
        reasons = sorted({r.get("reason", "?") for r in ctx.items.values()})
        raise StageError(f"{stage.name}: every item failed ({'; '.join(reasons)[:300]})")
    manifest = {
        "stage": stage.name,
        "key": key,
        "digest": output_digest(stage, config, out, ctx.items),
        "config_hash": hash_json({s: section_dict(config, s) for s in stage.sections}),
        "config": {s: dataclasses.asdict(getattr(config, s)) for s in stage.sections},  # every field, as run
        "inputs": input_keys,
        "versions": package_versions(),
        "items": {k: {kk: vv for kk, vv in v.items() if kk not in ("key", "files")} for k, v in sorted(ctx.items.items())},
        "counts": ctx.counts,
        "timings": {"seconds": round(seconds, 3)},
        "summary": _jsonable(summary),
        "finished": True,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(out / MANIFEST, manifest)
    log.info("%s: done in %.1f s%s", stage.name, seconds, _fmt_counts(ctx.counts))
    return manifest


def _fmt_counts(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ")"
