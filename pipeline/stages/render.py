"""Stage `render`: per reconstructed building, colour/depth/height/normal views of each scale's point cloud
framed on the building and a DSM (reconstruction.render.render_building); on a dataset with ground truth,
then the share of the building's true silhouette each view covers (reconstruction.silhouette)."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.cache import hash_files, hash_json
from pipeline.stage import Stage, StageContext, StageError
from reconstruction.config import RenderConfig

log = logging.getLogger("skylink")


def render_one(item_id: str, out: Path, scenes: str, cfg: dict, tree: str | None = None) -> dict:
    """Render one building (module-level so process pools and Ray can pickle it), then, where the
    dataset has ground truth, measure the renders' silhouette coverage into `quality.json`."""
    from reconstruction.render import render_building  # here: a cached run never loads torch

    summary = render_building(Path(scenes) / item_id, out, RenderConfig(**cfg))
    result = {"points": {k: v["points"] for k, v in summary["scales"].items()},
              "coverage": {k: v["coverage"] for k, v in summary["scales"].items()},
              "dsm_max_height": {k: v["dsm_max_height"] for k, v in summary["scales"].items()},
              "radius": summary["radius"], "ground_z": summary["ground_z"], "device": summary["device"],
              "axis_source": summary["axis_source"]}
    if tree is not None:
        # Measuring only: the views are written; the ground truth is read from here on.
        from reconstruction.silhouette import silhouette_coverage

        try:
            quality = silhouette_coverage(out, Path(scenes) / item_id, Path(tree), item_id)
        except (OSError, ValueError) as e:
            log.warning("render %s: silhouette coverage not measured (%s)", item_id, e)
            quality = {"error": str(e)}
        if quality is not None:
            (out / "quality.json").write_text(json.dumps({"silhouette_coverage": quality}, indent=1) + "\n")
            if "scales" in quality:
                result["silhouette_coverage"] = {k: {"median": v["median"], "min": v["min"]}
                                                 for k, v in quality["scales"].items()}
                result["silhouette_fill_median"] = quality["fill_median"]
    return result


def truth_digest(tree: Path, building: str, mesh_digest: str | None) -> str | None:
    """Digest of the ground truth the measuring step reads for one building (None without any)."""
    cams = tree / "meta" / "cameras" / f"{building}.json"
    table = tree / "meta" / "buildings.json"
    if mesh_digest is None or not cams.is_file() or not table.is_file():
        return None
    return hash_json([mesh_digest, hash_files([cams, table], root=tree)])


def run(ctx: StageContext) -> dict:
    cfg: RenderConfig = ctx.section
    scenes = ctx.input("reconstruct").resolve()
    buildings = ctx.ok_items("reconstruct")
    if not buildings:
        raise StageError(f"{scenes}: no building was reconstructed, nothing to render")
    tree = (ctx.input("data") / "tree").resolve()
    mesh = tree / "meta" / "scene.ply"
    mesh_digest = hash_files([mesh], root=tree) if mesh.is_file() else None
    items = {}
    for b in buildings:
        plys = [scenes / b / f"scale{k}.ply" for k in cfg.scales]
        missing = [p.name for p in plys if not p.is_file()]
        if missing:
            raise StageError(f"{scenes / b}: missing {', '.join(missing)} (render.scales = {list(cfg.scales)})")
        # Rendering reads the clouds and the registered poses (the orbit axis frames the views); the
        # measuring step after it reads the ground truth. Digests of the reconstruction were recorded
        # when reconstruct wrote the item: nothing of it is rehashed here.
        files = [p.name for p in plys] + [f for f in ("sparse/images.bin",) if (scenes / b / f).is_file()]
        items[b] = hash_json([ctx.item_digest("reconstruct", b, files), truth_digest(tree, b, mesh_digest)])
    statuses = ctx.run_items(items, render_one, desc="render", scenes=str(scenes), cfg=dataclasses.asdict(cfg),
                             tree=str(tree) if mesh_digest else None)
    ok = {b: r for b, r in statuses.items() if r.get("status") == "ok"}
    summary: dict = {"buildings": len(items), "ok": len(ok), "views": cfg.n_views, "image_size": cfg.image_size,
                     "failed": {b: r.get("reason") for b, r in statuses.items() if r.get("status") != "ok"}}
    for k in map(str, cfg.scales):
        cov = [r["coverage"][k] for r in ok.values() if k in r.get("coverage", {})]
        if cov:
            summary[f"mean_coverage_scale{k}"] = round(sum(cov) / len(cov), 4)
        # Share of the true silhouette covered per view (ground truth, measured after rendering).
        sil = [r["silhouette_coverage"][k] for r in ok.values() if k in r.get("silhouette_coverage", {})]
        med = [v["median"] for v in sil if v["median"] is not None]
        low = [v["min"] for v in sil if v["min"] is not None]
        if med:
            summary[f"silhouette_coverage_median_scale{k}"] = round(float(np.median(med)), 4)
            summary[f"silhouette_coverage_min_scale{k}"] = round(float(min(low)), 4)
    fill = [r["silhouette_fill_median"] for r in ok.values() if r.get("silhouette_fill_median") is not None]
    if fill:
        summary["silhouette_fill_median"] = round(float(np.median(fill)), 4)
    ctx.log.info("render: %d/%d buildings rendered, %d views x %d scales at %d px", len(ok), len(items),
                 cfg.n_views, len(cfg.scales), cfg.image_size)
    return summary


STAGE = Stage(name="render", sections=("render",), needs=("reconstruct", "data"), run=run,
              help="render each building's point clouds into colour/depth/height/normal views and a DSM")
