"""Stage `data`: the dataset tree (generated synthetic world or a given folder), validated and indexed."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.cache import _remove, atomic_write_json, hash_json
from pipeline.stage import Stage, StageContext, StageError
from retrieval.dataset import format_table, read_tree, summary_table, validate_tree


def tree_fingerprint(root: Path) -> str:
    """Cheap content fingerprint of a folder (names, sizes, mtimes), so edits to a region are seen."""
    rows = []
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st = p.stat()
            rows.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns])
    return hash_json(rows)


def run(ctx: StageContext) -> dict:
    cfg = ctx.config.data
    tree = ctx.out / "tree"
    if cfg.source == "synthetic":
        from synthetic.generate import generate_world

        if tree.is_symlink():
            tree.unlink()
        _remove(tree)
        generate_world(ctx.config.synth, tree, preview=True)
    elif cfg.source == "path":
        if not cfg.root:
            raise StageError("data.source is 'path' but data.root is not set (use --set data.root=DIR)")
        root = Path(cfg.root).expanduser().resolve()
        if not root.is_dir():
            raise StageError(f"{root}: dataset folder not found (data.root)")
        if tree.is_symlink() or tree.exists():
            _remove(tree)
        os.symlink(root, tree, target_is_directory=True)
    else:
        raise StageError(f"data.source: unknown value {cfg.source!r} (expected synthetic or path)")
    if cfg.validate:
        problems = validate_tree(tree)
        if problems:
            for p in problems[:50]:
                ctx.log.error("%s", p)
            raise StageError(f"{tree}: {len(problems)} problem(s) in the dataset tree (first: {problems[0]})")
    records = read_tree(tree)
    atomic_write_json(ctx.out / "index.json", {"root": str(tree.resolve()), "images": [r.to_json(tree) for r in records]})
    rows = summary_table(records)
    ctx.log.info("dataset:\n%s", format_table(rows))
    return {"images": len(records), "table": rows, "root": str(tree.resolve())}


def fingerprint(config) -> dict:
    if config.data.source == "path" and config.data.root and Path(config.data.root).is_dir():
        return {"tree": tree_fingerprint(Path(config.data.root))}
    return {}


STAGE = Stage(name="data", sections=("data", "synth"), needs=(), run=run, fingerprint=fingerprint,
              help="generate the synthetic world or take a dataset folder; validate and index it")
