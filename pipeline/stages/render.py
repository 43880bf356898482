"""Stage `render`: per reconstructed building, colour/depth/height/normal views of each scale's point cloud
and a DSM (reconstruction.render.render_building)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.stage import Stage, StageContext, StageError
from reconstruction.config import RenderConfig
from reconstruction.render import render_building


def render_one(item_id: str, out: Path, scenes: str, cfg: dict) -> dict:
    """Render one building (module-level so process pools and Ray can pickle it)."""
    summary = render_building(Path(scenes) / item_id, out, RenderConfig(**cfg))
    return {"points": {k: v["points"] for k, v in summary["scales"].items()},
            "coverage": {k: v["coverage"] for k, v in summary["scales"].items()},
            "dsm_max_height": {k: v["dsm_max_height"] for k, v in summary["scales"].items()},
            "radius": summary["radius"], "ground_z": summary["ground_z"], "device": summary["device"]}


def run(ctx: StageContext) -> dict:
    cfg: RenderConfig = ctx.section
    scenes = ctx.input("reconstruct").resolve()
    buildings = ctx.ok_items("reconstruct")
    if not buildings:
        raise StageError(f"{scenes}: no building was reconstructed, nothing to render")
    items = {}
    for b in buildings:
        plys = [scenes / b / f"scale{k}.ply" for k in cfg.scales]
        missing = [p.name for p in plys if not p.is_file()]
        if missing:
            raise StageError(f"{scenes / b}: missing {', '.join(missing)} (render.scales = {list(cfg.scales)})")
        # The clouds are all rendering reads; the COLMAP model and quality.json do not change the views.
        # Their digests were recorded when reconstruct wrote the item: nothing is rehashed here.
        items[b] = ctx.item_digest("reconstruct", b, [p.name for p in plys])
    statuses = ctx.run_items(items, render_one, desc="render", scenes=str(scenes), cfg=dataclasses.asdict(cfg))
    ok = {b: r for b, r in statuses.items() if r.get("status") == "ok"}
    summary: dict = {"buildings": len(items), "ok": len(ok), "views": cfg.n_views, "image_size": cfg.image_size,
                     "failed": {b: r.get("reason") for b, r in statuses.items() if r.get("status") != "ok"}}
    for k in map(str, cfg.scales):
        cov = [r["coverage"][k] for r in ok.values() if k in r.get("coverage", {})]
        if cov:
            summary[f"mean_coverage_scale{k}"] = round(sum(cov) / len(cov), 4)
    ctx.log.info("render: %d/%d buildings rendered, %d views x %d scales at %d px", len(ok), len(items),
                 cfg.n_views, len(cfg.scales), cfg.image_size)
    return summary


STAGE = Stage(name="render", sections=("render",), needs=("reconstruct",), run=run,
              help="render each building's point clouds into colour/depth/height/normal views and a DSM")
