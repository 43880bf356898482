"""Render speed of the synthetic world generator: images per second at 256x256 and 512x512.

    python bench/bench_synth.py [--images 72] [--workers 1 2] [--sizes 256 512]

Builds the demo-size world (default `SynthConfig`), plans its shots, and renders a fixed sample
(drone, satellite, street and google in the world's proportions) to JPEG files, timing wall clock
and CPU seconds (this process and its workers). Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.config import SynthConfig  # noqa: E402
from synthetic.generate import build_world, plan_shots, render_shots  # noqa: E402
from synthetic.render import Renderer  # noqa: E402


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _resize(shot, size: int):
    cam = shot.camera
    scale = size / cam.width
    K = cam.K.copy()
    K[:2] *= scale
    return replace(shot, camera=replace(cam, width=size, height=size, K=K))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=72)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = SynthConfig(seed=args.seed)
    t0 = time.perf_counter()
    layout, mesh = build_world(cfg)
    t_world = time.perf_counter() - t0
    renderer = Renderer(mesh, layout, cfg.seed, cfg.shadows)
    t0 = time.perf_counter()
    shots = plan_shots(cfg, layout, renderer)
    t_plan = time.perf_counter() - t0
    step = max(1, len(shots) // args.images)
    sample = shots[::step][: args.images]
    rows = []
    for size in args.sizes:
        batch = [_resize(s, size) for s in sample]
        for w in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                for s in batch:
                    s.paths = [s.paths[0]]
                c0, t0 = _cpu(), time.perf_counter()
                render_shots(batch, Path(tmp), cfg, mesh, layout, workers=w, desc=f"{size}px x{w}")
                wall, cpu = time.perf_counter() - t0, _cpu() - c0
            rows.append({"size": size, "workers": w, "images": len(batch), "wall_s": round(wall, 2),
                         "images_per_s": round(len(batch) / wall, 2),
                         "cpu_s_per_image": round(cpu / len(batch), 4)})
    views = {v: sum(s.view == v for s in sample) for v in ("drone", "satellite", "street", "google")}
    result = {"bench": "synth", "world": {"buildings": len(layout.buildings), "triangles": int(len(mesh.tris)),
                                          "shots": len(shots), "build_s": round(t_world, 2),
                                          "plan_s": round(t_plan, 2)},
              "sample_views": views, "results": rows}
    print(f"world: {len(layout.buildings)} buildings, {len(mesh.tris)} triangles, {len(shots)} shots; "
          f"build {t_world:.1f} s, plan {t_plan:.1f} s; sample {views}")
    print(f"{'size':>6} {'workers':>8} {'images':>7} {'wall s':>8} {'images/s':>9} {'cpu s/img':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['workers']:>8} {r['images']:>7} {r['wall_s']:>8} {r['images_per_s']:>9} "
              f"{r['cpu_s_per_image']:>10}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
