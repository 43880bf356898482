"""Benchmark: dense reconstruction (reconstruction/dense.py) after SfM.

Cases: one tiny-world building (54 drone images at 256 px, SfM poses; target <= 20 s for the dense step
on 2 cores) with accuracy / completeness against the ground-truth mesh at tau = 0.5/1/2% of the
building's size, dense beside sparse; and ../shared/data/herzjesu-p8 (8 real photos): dense points
vs the sparse model's points (target >= 20x) and the share of confident depth-map pixels that another
view confirms (geometric consistency), with a picture of a depth map and its consistency mask in
docs/images/dense_herzjesu.jpg. Wall seconds depend on the machine's load (the 1-minute load average
is recorded); cpu_s is this process's CPU time over all threads.

    python bench/bench_dense.py [--only synthetic herzjesu] [--out bench/out/dense.json] [--set dense_min_pixels=2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reconstruction.align import camera_centres, orbit_radius  # noqa: E402
from reconstruction.config import ReconstructConfig  # noqa: E402
from reconstruction.dense import dense_clouds  # noqa: E402
from reconstruction.fusion import kept_mask  # noqa: E402
from reconstruction.meta import building_size  # noqa: E402
from reconstruction.multiscale import default_groups  # noqa: E402
from reconstruction.scene import reconstruct_scene  # noqa: E402

CASES = ("synthetic", "herzjesu")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def shared_data() -> Path | None:
    for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if p.is_dir():
            return p
    return None


def tiny_building(cache: Path, index: int = 0) -> Path:
    """One building of the tiny world (tiny.yaml's synth section): drone images, cameras, record, mesh."""
    from pipeline.config import load_config
    from synthetic.generate import build_world, generate_building_drone
    from synthetic.geometry import write_ply

    cfg = load_config(REPO / "assets" / "configs" / "tiny.yaml").synth
    out = cache / f"tiny-building-{index}"
    if not (out / "scene.ply").exists():
        generate_building_drone(cfg, out, index)
        write_ply(build_world(cfg)[1], out / "scene.ply")
    return out


def synthetic_case(cache: Path, cfg: ReconstructConfig) -> dict:
    folder = tiny_building(cache)
    cams = json.loads((folder / "cameras.json").read_text())
    b = json.loads((folder / "building.json").read_text())
    P = {n: np.asarray(c["cam_from_world"], float) for n, c in cams.items()}
    gt = {"cameras": {n: {"cam_from_world": p} for n, p in P.items()}, "mesh": str(folder / "scene.ply"),
          "orbit_radius": b["orbit_radius"], "building_size": building_size(b), "building_index": b.get("index", 0)}
    images = next(p.parent for p in folder.rglob("image-01.jpeg"))
    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        c0, t0 = _cpu(), time.perf_counter()
        q = reconstruct_scene(images, Path(tmp), cfg, ground_truth=gt)  # from the images alone
        total = time.perf_counter() - t0
    geo = q["ground_truth"].get("geometry", {})
    return {
        "images": q["total"], "registered": q["registered"], "image_size": 256,
        "dense_s": q["seconds"]["dense"], "dense_depth_s": q["dense"].get("seconds_depth"),
        "dense_fusion_s": q["dense"].get("seconds_fusion"), "total_s": round(total, 2),
        "cpu_s_total": round(_cpu() - c0, 1), "fallback": q["dense"]["fallback"],
        "dense_points": sum(q["points_per_scale"].values()), "sparse_points": sum(q["sparse_points_per_scale"].values()),
        "valid_share": q["dense"]["valid_share"], "consistent_share": q["dense"]["consistent_share"],
        "dense": {m: geo.get("dense", {}).get(m) for m in ("accuracy", "completeness", "completeness_facades")},
        "sparse": {m: geo.get("sparse", {}).get(m) for m in ("accuracy", "completeness", "completeness_facades")},
    }


def herzjesu_case(root: Path, cfg: ReconstructConfig, picture: Path | None) -> dict:
    import pycolmap

    images = root / "herzjesu-p8" / "images"
    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        q = reconstruct_scene(images, Path(tmp), dataclasses.replace(cfg, dense="sparse"))
        rec = pycolmap.Reconstruction(Path(tmp) / "sparse")
    radius = orbit_radius(np.stack(list(camera_centres(rec).values())))
    names = [im.name for im in rec.images.values()]
    # not an orbit: one cloud from all images, no crop around an axis
    dcfg = dataclasses.replace(cfg, dense="torch", dense_crop_radius=0.0, n_scales=1)
    c0 = _cpu()
    res = dense_clouds(rec, images, {n: 1 for n in names}, dcfg, radius)
    out = {"images": len(names), "registered": q["registered"], "depth_size": res.stats.get("depth_size"),
           "dense_s": round(res.seconds, 2), "cpu_s": round(_cpu() - c0, 1), "fallback": res.fallback,
           "sparse_points": rec.num_points3D(),
           "dense_points": sum(len(c.points) for c in (res.clouds or {}).values()),
           "photometric_share": res.stats["photometric_share"], "valid_share": res.stats["valid_share"],
           "consistent_share": res.stats["consistent_share"]}
    out["dense_over_sparse"] = round(out["dense_points"] / max(1, out["sparse_points"]), 1)
    if picture and res.maps:
        i = len(res.views) // 2
        v, m = res.views[i], res.maps[i]
        d = m.depth
        lo, hi = np.percentile(d[d > 0], [2, 98]) if (d > 0).any() else (0, 1)
        col = cv2.applyColorMap((np.clip((d - lo) / (hi - lo + 1e-9), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
        col[d <= 0] = 0
        ok = kept_mask(m, dcfg.mvs_min_consistent)
        mask = np.zeros_like(col)
        mask[ok] = (80, 200, 80)
        mask[m.photometric & ~ok] = (60, 60, 220)
        picture.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(picture), np.hstack([v.rgb[..., ::-1], col, mask]))
        out["picture"] = str(picture.relative_to(REPO)) if picture.is_relative_to(REPO) else str(picture)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", choices=CASES)
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out" / "cache")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--picture", type=Path, default=REPO / "docs" / "images" / "dense_herzjesu.jpg")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a reconstruct option, e.g. dense_min_pixels=2 (repeatable)")
    args = ap.parse_args(argv)
    cfg = ReconstructConfig(max_image_size=256, dense="torch", num_threads=int(os.environ.get("BENCH_THREADS", "2")))
    overrides = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        if not hasattr(cfg, key):
            ap.error(f"--set {kv}: no reconstruct option {key!r}")
        overrides[key] = yaml.safe_load(value)  # as `skylink --set` reads values (false, 0.5, none)
    cfg = dataclasses.replace(cfg, **overrides)
    result: dict = {"load_avg_1min": round(os.getloadavg()[0], 2), "threads": cfg.num_threads, "overrides": overrides}
    cases = args.only or CASES
    if "synthetic" in cases:
        result["synthetic"] = synthetic_case(args.cache, cfg)
    data = shared_data()
    if "herzjesu" in cases and data is not None:
        result["herzjesu"] = herzjesu_case(data, dataclasses.replace(cfg, max_image_size=1024, mvs_max_image_size=512,
                                                                     dense_voxel_size=0.0005), args.picture)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print("\n| case | figure | value |\n|---|---|---|")
    for case in CASES:
        for k, v in (result.get(case) or {}).items():
            print(f"| {case} | {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
