"""Stage `reconstruct`: per training building, COLMAP SfM of its drone images into an aligned sparse
model, `scale{1,2,3}.ply` and `quality.json` (reconstruction.scene.reconstruct_scene)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pipeline.cache import atomic_write_json, hash_files, hash_json, read_json
from pipeline.stage import Stage, StageContext, StageError
from reconstruction.config import ReconstructConfig
from reconstruction.meta import drone_ground_truth
from reconstruction.sfm import list_images
from retrieval.paths import record_path


def reconstruct_one(item_id: str, out: Path, tree: str, cfg: dict, threads: int = -1,
                    workdir: str | None = None) -> dict:
    """Reconstruct one building into `out` (module-level so process pools and Ray can pickle it).

    `threads` shares the cores among parallel workers; it is not part of the config (and so of the
    cache key) because it does not change what is computed. With `workdir`, quality.json names the
    images relative to it when they lie inside it (the generated world), so the work dir can move.
    """
    root = Path(tree)
    drone = root / "train" / "drone" / item_id
    # Ground truth only measures (quality.json); the reconstruction sees the images and their EXIF alone.
    ground_truth = drone_ground_truth(root, item_id, drone)
    rcfg = ReconstructConfig(**cfg)
    if rcfg.num_threads == -1 and threads > 0:
        rcfg = dataclasses.replace(rcfg, num_threads=threads)
    from reconstruction.scene import reconstruct_scene  # here: a cached run never loads torch or open3d

    q = reconstruct_scene(drone, out, rcfg, ground_truth=ground_truth)
    if workdir and (out / "quality.json").is_file():
        quality = read_json(out / "quality.json") or {}
        atomic_write_json(out / "quality.json", quality | {"images": record_path(drone, workdir)})
    summary = {
        "registered": q["registered"], "total": q["total"], "skipped": sorted(q["skipped"]),
        "mean_reprojection_error": round(q["mean_reprojection_error"], 4),
        "points_per_scale": q["points_per_scale"], "aligned_by": q["alignment"]["method"],
        "alignment_residual_rms": q["alignment"]["residual_rms"], "sfm_seconds": q["seconds"]["total"],
        "priors_from": q["priors_from"], "intrinsics_from": q["intrinsics_from"], "warnings": q["warnings"],
        "dense_backend": q["dense"]["backend"], "dense_fallback": q["dense"]["fallback"],
        "dense_seconds": q["dense"]["seconds"], "sparse_points_per_scale": q["sparse_points_per_scale"],
        "mapper": q["mapper"],
    }
    if q.get("mapper_check"):
        summary["mapper_dropped"] = len(q["mapper_check"]["dropped"])
        summary["mapper_reregistered"] = len(q["mapper_check"].get("reregistered", []))
    gt = q.get("ground_truth") or {}
    for key in ("camera_error_rel_median", "camera_error_rel_max", "mesh_distance_rel_median", "mesh_distance_rel_p90"):
        if gt.get(key) is not None:
            summary[key] = round(gt[key], 5)
    for name, g in (gt.get("geometry") or {}).items():  # dense / sparse accuracy and completeness at tau = 1%
        for measure in ("accuracy", "completeness", "completeness_facades"):
            summary[f"{name}_{measure}_1pct"] = g[measure].get("0.01")
    return summary


def _item_hash(root: Path, building: str, images: list[Path]) -> str:
    # The images are all the input: their EXIF (GPS, focal length) is part of their bytes.
    return hash_files(images, root=root)


def run(ctx: StageContext) -> dict:
    cfg: ReconstructConfig = ctx.section
    tree = (ctx.input("data") / "tree").resolve()
    drone_root = tree / "train" / "drone"
    if not drone_root.is_dir():
        raise StageError(f"{drone_root}: no training drone images, nothing to reconstruct")
    buildings = sorted(p.name for p in drone_root.iterdir() if p.is_dir())
    items = {b: _item_hash(tree, b, list_images(drone_root / b)) for b in buildings if list_images(drone_root / b)}
    for b in sorted(set(buildings) - set(items)):
        ctx.log.warning("reconstruct: %s has no drone images; skipped", drone_root / b)
    # A local pool splits this machine's cores; Ray workers run on their own machines.
    threads = max(1, (os.cpu_count() or 1) // ctx.workers) if ctx.executor == "local" and ctx.workers > 1 else -1
    statuses = ctx.run_items(items, reconstruct_one, desc="reconstruct", tree=str(tree), cfg=dataclasses.asdict(cfg),
                             threads=threads, workdir=str(ctx.workdir.resolve()))
    ok = {b: r for b, r in statuses.items() if r.get("status") == "ok"}
    summary: dict = {
        "buildings": len(items), "ok": len(ok), "failed": {b: r.get("reason") for b, r in statuses.items() if r.get("status") != "ok"},
        "registered": sum(r["registered"] for r in ok.values()), "images": sum(r["total"] for r in ok.values()),
    }
    if any("mapper_dropped" in r for r in ok.values()):  # global_checked: what the cross-check kept
        summary["mapper_kept"] = {m: sum(r.get("mapper") == m for r in ok.values()) for m in ("global", "incremental")}
        summary["mapper_dropped_images"] = sum(r.get("mapper_dropped", 0) for r in ok.values())
        summary["mapper_reregistered_images"] = sum(r.get("mapper_reregistered", 0) for r in ok.values())
    for key in ("camera_error_rel_median", "mesh_distance_rel_median"):
        vals = sorted(r[key] for r in ok.values() if key in r)
        if vals:
            summary[f"worst_{key}"] = vals[-1]
    ctx.log.info("reconstruct: %d/%d buildings ok, %d/%d images registered", len(ok), len(items),
                 summary["registered"], summary["images"])
    return summary


STAGE = Stage(name="reconstruct", sections=("reconstruct",), needs=("data",), run=run,
              help="COLMAP SfM per training building: aligned sparse model, scale{1,2,3}.ply, quality.json")
