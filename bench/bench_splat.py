"""Benchmark: the z-buffer point splatter (reconstruction/splat.py) and one building's full render.

Points: 1M samples on a box building and its ground, rendered into the default 10 views
(1 orthographic nadir + 9 perspective) at 128 px. The figure of merit is point-views per second,
N points x V views / seconds (target >= 10M/s on 2 CPU cores), at splat sides of 1, 2 and 3 px
and with world-size splats. `render_building` is timed on a 150k-point scene (3 scales,
colour + depth + height + normals + DSM) for the per-building cost. Times are medians over repeats.

    python bench/bench_splat.py [--points 1000000] [--repeats 3] [--device auto] [--out bench/out/splat.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconstruction.config import RenderConfig  # noqa: E402
from reconstruction.render import render_building  # noqa: E402
from reconstruction.splat import splat_points  # noqa: E402
from reconstruction.views import view_set  # noqa: E402


def scene_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Half the points on the surface of a 20 x 12 x 15 m box, half on a 60 m ground square."""
    rng = np.random.default_rng(seed)
    nb = n // 2
    ext = np.array([20.0, 12.0, 15.0])
    p = rng.uniform(-0.5, 0.5, (nb, 3)) * ext
    axis = rng.integers(0, 3, nb)
    p[np.arange(nb), axis] = np.sign(rng.standard_normal(nb)) * ext[axis] / 2  # snap to a face
    p[:, 2] += ext[2] / 2
    g = np.c_[rng.uniform(-30, 30, (n - nb, 2)), np.zeros(n - nb)]
    xyz = np.r_[p, g].astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    return xyz, rgb


def median_time(fn, repeats: int, sync) -> tuple[float, float]:
    """Median wall and process-CPU seconds. On a shared machine wall time is inflated by other jobs;
    CPU seconds / threads is what the code would take on idle cores."""
    fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def bench_splat(n: int, size: int, repeats: int, device: torch.device) -> dict:
    xyz, rgb = scene_points(n)
    cams = view_set(np.array([0.0, 0.0, 7.5]), 30.0, n_views=10, image_size=size)
    pts = torch.from_numpy(xyz).to(device)
    cols = torch.from_numpy(rgb).to(device)
    groups = []
    for ortho in (True, False):
        sel = [c for c in cams if c.orthographic == ortho]
        K = torch.tensor(np.stack([c.K for c in sel]), dtype=torch.float32, device=device)
        T = torch.tensor(np.stack([c.cam_from_world for c in sel]), dtype=torch.float32, device=device)
        groups.append((K, T, ortho))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    for label, kw in [("px1", {"point_size": 1}), ("px2", {"point_size": 2}), ("px3", {"point_size": 3}),
                      ("world0.1m", {"world_size": 0.1, "max_size": 8})]:
        def run():
            for K, T, ortho in groups:
                splat_points(pts, cols, K, T, size, size, orthographic=ortho, **kw)
        t, cpu = median_time(run, repeats, sync)
        out[label] = {"seconds": round(t, 4), "point_views_per_s_M": round(n * len(cams) / t / 1e6, 2),
                      "cpu_seconds": round(cpu, 4)}
    return out


def bench_render(repeats: int, device: str) -> dict:
    import open3d as o3d

    xyz, rgb = scene_points(150_000, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "scene"
        scene.mkdir()
        for k in (1, 2, 3):
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[k - 1::k].astype(np.float64)))
            pc.colors = o3d.utility.Vector3dVector(rgb[k - 1::k] / 255.0)
            o3d.io.write_point_cloud(str(scene / f"scale{k}.ply"), pc)
        cfg = RenderConfig(device=device)
        t, cpu = median_time(lambda: render_building(scene, Path(tmp) / "out", cfg), repeats, lambda: None)
    return {"points_total": int(sum(len(xyz[k - 1::k]) for k in (1, 2, 3))), "seconds": round(t, 3),
            "cpu_seconds": round(cpu, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    res = {"device": str(device), "threads": torch.get_num_threads(), "points": args.points, "views": 10,
           "image_size": args.size, "target_point_views_per_s_M": 10.0}
    res["splat"] = bench_splat(args.points, args.size, args.repeats, device)
    res["render_building"] = bench_render(max(1, args.repeats - 1), str(device))
    print(json.dumps(res, indent=2))
    print("\n| splat | seconds | M point-views/s | CPU seconds |\n|---|---|---|---|")
    for k, v in res["splat"].items():
        print(f"| {k} | {v['seconds']} | {v['point_views_per_s_M']} | {v['cpu_seconds']} |")
    rb = res["render_building"]
    print(f"\nrender_building: {rb['points_total']} points, 3 scales x 10 views: {rb['seconds']} s "
          f"({rb['cpu_seconds']} CPU s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
