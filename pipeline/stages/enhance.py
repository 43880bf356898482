"""Stage `enhance` (GREM): per training building, rank its google images against its street images with a
frozen encoder and keep the top share; on the synthetic world, score the kept sets against the truth."""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from pipeline.cache import atomic_write_json, hash_files
from pipeline.stage import Stage, StageContext, StageError


@functools.lru_cache(maxsize=2)
def _encoder(name: str, weights: str | None, device: str):
    # One frozen encoder per worker process, reused across its buildings.
    from retrieval.backbone import frozen_encoder

    return frozen_encoder(device, name=name, weights=weights)


def enhance_one(item_id: str, out: Path, tree: str, cfg: dict) -> dict:
    """GREM for one building (module-level so process pools and Ray can pickle it)."""
    from retrieval.grem import enhance_building, images_in, write_grem  # here: a cached run never loads torch

    root = Path(tree)
    street = images_in(root / "train" / "street" / item_id)
    google = images_in(root / "train" / "google" / item_id)
    encoder = _encoder(cfg["encoder"], cfg["encoder_weights"], cfg["device"]) if street and google else None
    res = enhance_building(street, google, encoder, cfg["keep_share"], root=root, score=cfg["score"],
                           image_size=cfg["image_size"], batch_size=cfg["batch_size"], device=cfg["device"])
    write_grem(out, res)
    return {"street": len(street), "google": len(google), "kept": len(res["kept"])}


def run(ctx: StageContext) -> dict:
    from retrieval.grem import GREM_FILE, images_in, kept_quality

    cfg = ctx.section
    tree = (ctx.input("data") / "tree").resolve()
    train = tree / "train"
    if not (train / "street").is_dir():
        raise StageError(f"{train / 'street'}: no training street images, nothing to enhance")
    ids = sorted({p.name for v in ("street", "google") if (train / v).is_dir() for p in (train / v).iterdir() if p.is_dir()})
    items = {b: hash_files(images_in(train / "street" / b) + images_in(train / "google" / b), root=tree) for b in ids}
    statuses = ctx.run_items(items, enhance_one, desc="enhance (GREM)", tree=str(tree), cfg=dataclasses.asdict(cfg))
    results = {}
    for b, rec in statuses.items():
        if rec.get("status") == "ok":
            results[b] = json.loads((ctx.out / b / GREM_FILE).read_text())
    summary: dict = {
        "buildings": len(results),
        "google": sum(len(r["kept"]) + len(r["dropped"]) for r in results.values()),
        "kept": sum(len(r["kept"]) for r in results.values()),
        "score": cfg.score, "keep_share": cfg.keep_share,
    }
    truth_file = tree / "meta" / "google_truth.json"
    if truth_file.is_file():
        try:
            truth = json.loads(truth_file.read_text())
        except json.JSONDecodeError as e:
            raise StageError(f"{truth_file}: not valid JSON ({e})") from None
        quality = kept_quality(results, truth)
        atomic_write_json(ctx.out / "quality.json", quality)
        summary["truth"] = quality
        ctx.log.info("GREM kept %d of %d google images: precision %s, recall %s (keeping all: precision %s)",
                     quality["n_kept"], quality["n_google"], quality["precision"], quality["recall"],
                     quality["precision_keep_all"])
        right = [s["score"] for b, r in results.items() for s in r["scores"] if truth.get(s["path"]) == b]
        wrong = [s["score"] for b, r in results.items() for s in r["scores"] if truth.get(s["path"]) != b]
        if right or wrong:
            from retrieval.plots import plot_grem_scores

            plot_grem_scores(right, wrong, ctx.out / "grem_scores.png")
    return summary


STAGE = Stage(name="enhance", sections=("enhance",), needs=("data",), run=run,
              help="GREM: keep each building's google images most similar to its street images")
