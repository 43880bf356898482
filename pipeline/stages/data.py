"""Stage `data`: the dataset tree (generated synthetic world or a given folder), validated and indexed."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.cache import _remove, atomic_write_json, hash_json
from pipeline.stage import Stage, StageContext, StageError
from retrieval.dataset import format_table, read_tree, summary_table, validate_tree
from retrieval.paths import record_path


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
    # Build or check the new tree beside the old one: a failing run leaves finished work untouched.
    staging = ctx.out / f".tmp-tree-{os.getpid()}"
    _remove(staging)
    if cfg.source == "synthetic":
        from synthetic.generate import generate_world

        generate_world(ctx.config.synth, staging, preview=True)
        source = staging
    elif cfg.source == "path":
        if not cfg.root:
            raise StageError("data.source is 'path' but data.root is not set (use --set data.root=DIR)")
        source = Path(cfg.root).expanduser().resolve()
        if not source.is_dir():
            raise StageError(f"{source}: dataset folder not found (data.root)")
    else:
        raise StageError(f"data.source: unknown value {cfg.source!r} (expected synthetic or path)")
    try:
        if cfg.validate:
            problems = validate_tree(source)
            if problems:
                for p in problems[:50]:
                    ctx.log.error("%s", p)
                raise StageError(f"{len(problems)} problem(s) in the dataset tree; first: {problems[0]}")
        read_tree(source)  # raises for a folder of neither layout
    except BaseException:
        _remove(staging)
        raise
    ctx.begin_writing()
    if cfg.source == "synthetic":
        old = ctx.out / f".old-tree-{os.getpid()}"
        if tree.exists() or tree.is_symlink():
            os.replace(tree, old)
        os.replace(staging, tree)
        _remove(old)
    else:
        link = ctx.out / f".tmp-link-{os.getpid()}"
        _remove(link)
        os.symlink(source, link, target_is_directory=True)
        if tree.is_dir() and not tree.is_symlink():
            _remove(tree)
        os.replace(link, tree)
    records = read_tree(tree)
    # The generated tree is recorded as `data/tree` (work-dir relative), a given folder by its absolute path.
    root = record_path(tree.resolve(), ctx.workdir)
    atomic_write_json(ctx.out / "index.json", {"root": root, "images": [r.to_json(tree) for r in records]})
    rows = summary_table(records)
    ctx.log.info("dataset:\n%s", format_table(rows))
    return {"images": len(records), "table": rows, "root": root}


def fingerprint(config) -> dict:
    if config.data.source == "path" and config.data.root and Path(config.data.root).is_dir():
        return {"tree": tree_fingerprint(Path(config.data.root))}
    return {}


STAGE = Stage(name="data", sections=("data", "synth"), needs=(), run=run, fingerprint=fingerprint, writes_late=True,
              help="generate the synthetic world or take a dataset folder; validate and index it")
