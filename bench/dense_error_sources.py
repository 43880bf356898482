"""Where the dense depth maps' error lies: by object and by viewing angle (measurement only).

On the tiny-world building of bench/bench_dense.py, the depth maps are computed on the true cameras
(so pose error is out of the picture) and every kept pixel's point is looked up on the ground-truth
scene mesh: the nearest triangle names the object (the target building's facades and roofs, the
ground, trees, cars, neighbours), and the cosine between the viewing ray and that triangle's normal
gives the angle of view. Prints, per object and per angle bin, the share of the points and the
share within tau = 0.5% and 1% of the building's size. SfM is cached under --cache.

    OMP_NUM_THREADS=1 python bench/dense_error_sources.py [--set mvs_refine_rounds=3] [--out bench/out/x.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pycolmap
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_dense import tiny_building  # noqa: E402
from dense_diagnosis import gt_model  # noqa: E402
from reconstruction.config import ReconstructConfig  # noqa: E402
from reconstruction.dense import mvs_options  # noqa: E402
from reconstruction.fusion import kept_mask  # noqa: E402
from reconstruction.meta import building_size  # noqa: E402
from reconstruction.mvs import run_mvs  # noqa: E402
from reconstruction.quality import SceneMesh  # noqa: E402
from reconstruction.scene import reconstruct_scene  # noqa: E402

OBJECTS = {-1: "ground", -2: "trees", -3: "cars"}
ANGLE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.01)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out" / "cache")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a reconstruct option")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = ReconstructConfig(max_image_size=256, dense="sparse", num_threads=1)
    over = {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    folder = tiny_building(args.cache)
    cams = json.loads((folder / "cameras.json").read_text())
    b = json.loads((folder / "building.json").read_text())
    size, index = building_size(b), b.get("index", 0)
    images = next(p.parent for p in folder.rglob("image-01.jpeg"))
    sfm = args.cache / "tiny-building-0-sfm"
    if not (sfm / "sparse" / "images.bin").is_file():
        reconstruct_scene(images, sfm, cfg)   # from the images alone; only its points are used below
    gt = {"cameras": {n: {"cam_from_world": np.asarray(c["cam_from_world"], float)} for n, c in cams.items()},
          "orbit_radius": b["orbit_radius"]}
    rec = gt_model(pycolmap.Reconstruction(sfm / "sparse"), gt, {n: np.asarray(c["K"], float) for n, c in cams.items()})
    opts = mvs_options(dataclasses.replace(cfg, dense="torch", **over))
    t = time.perf_counter()
    with torch.no_grad():
        views, maps, points = run_mvs(rec, images, opts)
    seconds = time.perf_counter() - t

    mesh = SceneMesh(folder / "scene.ply")
    tris, obj = mesh.tris, mesh.obj
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    P, C = [], []
    for v, m, p in zip(views, maps, points):
        ok = kept_mask(m, opts.min_consistent)
        P.append(p[ok].astype(np.float64))
        C.append(np.repeat(v.centre[None], int(ok.sum()), 0))
    P, C = np.concatenate(P), np.concatenate(C)
    closest, face = mesh.closest(P)
    d = np.linalg.norm(P - closest, axis=1) / size
    ray = (P - C) / np.linalg.norm(P - C, axis=1, keepdims=True)
    n = normal[face]
    cos = np.abs(np.sum(n * ray, axis=1))
    o = obj[face]
    facade = np.abs(n[:, 2]) < 0.3
    groups = {"building facades": (o == index) & facade, "building roofs and other": (o == index) & ~facade}
    groups |= {name: o == k for k, name in OBJECTS.items()}
    groups["neighbouring buildings"] = (o >= 0) & (o != index)
    groups |= {f"cos {lo:.1f}-{min(hi, 1.0):.1f}": (cos >= lo) & (cos < hi) for lo, hi in zip(ANGLE_BINS, ANGLE_BINS[1:])}
    groups["all"] = np.ones(len(d), bool)
    rows = {name: {"share": round(float(m.mean()), 4), "within_0.5%": round(float((d[m] <= 0.005).mean()), 4),
                   "within_1%": round(float((d[m] <= 0.01).mean()), 4)} for name, m in groups.items() if m.any()}
    result = {"overrides": over, "points": int(len(d)), "depth_seconds_1_thread": round(seconds, 1), "groups": rows}
    print(json.dumps(result, indent=1))
    print("\n| kept pixels' points | share | within tau 0.5% | within tau 1% |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['share']:.3f} | {r['within_0.5%']:.3f} | {r['within_1%']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
