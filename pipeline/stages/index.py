"""Stage `index`: embed the test sets with the trained model, write embeddings (NPY), names and a faiss
index per gallery."""
from __future__ import annotations

from pathlib import Path

from pipeline.stage import Stage, StageContext, StageError
from retrieval.paths import record_path


def find_checkpoint(train_dir: Path, name: str) -> Path:
    """`name` in the train stage dir (or below it), else the newest epoch checkpoint."""
    train_dir = Path(train_dir)
    for cand in (train_dir / name, *sorted(train_dir.rglob(name))):
        if cand.is_file():
            return cand
    epochs = sorted(train_dir.rglob("epoch_*.pt"))
    if epochs:
        return epochs[-1]
    raise StageError(f"{train_dir}: no checkpoint {name!r} and no epoch_*.pt (run the train stage)")


def run(ctx: StageContext) -> dict:
    from retrieval.backbone import resolve_device
    from retrieval.model import load_checkpoint
    from retrieval.search import INDEX_META, index_tree, read_index_meta

    cfg = ctx.section
    # not resolved: WORKDIR/data/tree is recorded as `data/tree` and found again after a move
    tree = ctx.input("data") / "tree"
    if not tree.is_dir():
        raise StageError(f"{tree}: dataset tree missing; run the data stage (or data.root was moved)")
    ckpt = find_checkpoint(ctx.input("train"), cfg.checkpoint)
    device = str(resolve_device(cfg.device))
    model, train_cfg = load_checkpoint(ckpt, device)
    image_size = cfg.image_size or int(train_cfg.get("image_size", 224))
    ctx.log.info("index: %s on %s at %d px", ckpt, device, image_size)
    out = ctx.out
    meta = index_tree(model, tree, out, kind=cfg.kind, image_size=image_size, batch_size=cfg.batch_size,
                      device=device, index_device=cfg.device, auto_threshold=cfg.auto_threshold, nlist=cfg.nlist,
                      nprobe=cfg.nprobe, hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction,
                      ef_search=cfg.ef_search, workdir=ctx.workdir)
    # Sets of an earlier run that this tree no longer has must not be picked up downstream.
    keep = {INDEX_META} | {f"{s}.npy" for s in meta["sets"]} | {f"{s}.json" for s in meta["sets"]} \
        | {v["file"] for v in meta["indexes"].values()}
    for p in out.iterdir():
        if p.is_file() and p.suffix in (".npy", ".json", ".faiss") and p.name not in keep and p.name != "manifest.json":
            p.unlink()
    read_index_meta(out)
    return {"checkpoint": record_path(ckpt, ctx.workdir), "image_size": image_size, "layout": meta["layout"],
            "sets": meta["sets"], "indexes": meta["indexes"]}


STAGE = Stage(name="index", sections=("index",), needs=("data", "train"), run=run,
              help="embed the test sets with the trained model; faiss index per gallery")
