"""Benchmark: per-scene reconstruction time (extract / match / map split) and quality.

Cases: one synthetic building (54 drone images at 384 px, known intrinsics and ground-truth camera
priors, as the `reconstruct` stage runs it; target <= 30 s on 2 cores), ../shared/data/herzjesu-p8
(8 real images; relative rotation error vs ground truth) and ../shared/data/brighton-beach (18 real
drone photos; aligned to EXIF GPS, RMS camera-centre distance to GPS). Prints one JSON object, then
a table. Wall seconds depend on what else runs on the machine (the 1-minute load average is
recorded); cpu_s is the process's CPU time over all threads, so cpu_s / cores bounds the wall time
of an idle machine from below.

    python bench/bench_reconstruct.py [--only synthetic herzjesu brighton] [--out bench/out/reconstruct.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reconstruction.config import ReconstructConfig  # noqa: E402
from reconstruction.meta import building_size  # noqa: E402
from reconstruction.scene import reconstruct_scene  # noqa: E402

CASES = ("synthetic", "herzjesu", "brighton")


def shared_data() -> Path | None:
    for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if p.is_dir():
            return p
    return None


def synthetic_building(cache: Path, size: int) -> Path:
    """One generated building's drone images + cameras.json + building.json + scene.ply (cached)."""
    from synthetic.config import SynthConfig
    from synthetic.generate import build_world, generate_building_drone
    from synthetic.geometry import write_ply

    out = cache / f"synthetic-building-{size}"
    if not (out / "scene.ply").exists():
        cfg = SynthConfig(n_train=1, n_test=0, n_distractors=0, drone_size=size)
        generate_building_drone(cfg, out, 0)
        write_ply(build_world(cfg)[1], out / "scene.ply")
    return out


def synthetic_inputs(folder: Path) -> dict:
    """Priors, intrinsics and ground truth of a `generate_building_drone` folder."""
    cams = json.loads((folder / "cameras.json").read_text())
    b = json.loads((folder / "building.json").read_text())
    P = {n: np.asarray(c["cam_from_world"], float) for n, c in cams.items()}
    return {
        "position_priors": {n: -p[:, :3].T @ p[:, 3] for n, p in P.items()},
        "intrinsics": {n: np.asarray(c["K"], float) for n, c in cams.items()},
        "ground_truth": {"cameras": {n: {"cam_from_world": p} for n, p in P.items()}, "mesh": str(folder / "scene.ply"),
                         "orbit_radius": b["orbit_radius"], "building_size": building_size(b)},
    }


def herzjesu_gt(root: Path) -> dict:
    cams = {}
    for f in sorted((root / "gt_cameras").glob("*.camera")):
        v = np.array(f.read_text().split(), float)
        R = v[12:21].reshape(3, 3).T
        cams[f.name.removesuffix(".camera")] = {"cam_from_world": np.hstack([R, (-R @ v[21:24])[:, None]])}
    return {"cameras": cams}


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine wall time is noisy, this is not."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(name: str, cfg: ReconstructConfig, work: Path, cache: Path) -> dict:
    data = shared_data()
    kwargs: dict = {}
    if name == "synthetic":
        folder = synthetic_building(cache, 384)
        images = folder
        kwargs = synthetic_inputs(folder)
    elif name == "herzjesu":
        images = data / "herzjesu-p8" / "images"
        kwargs = {"ground_truth": herzjesu_gt(data / "herzjesu-p8")}
    else:
        images = data / "brighton-beach" / "images"
    t0, c0 = time.perf_counter(), _cpu_seconds()
    q = reconstruct_scene(images, work / name, cfg, **kwargs)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    row = {
        "images": q["total"], "registered": q["registered"], "max_image_size": cfg.max_image_size,
        "matcher": q["matcher"], "points3D": q["points3D"], "reproj_px": round(q["mean_reprojection_error"], 3),
        **{f"{k}_s": v for k, v in q["seconds"].items() if k in ("extract", "match", "map", "align", "clouds")},
        "total_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_avg_1min": round(os.getloadavg()[0], 2),
        "aligned_by": q["alignment"]["method"],
        "align_rms": q["alignment"]["residual_rms"],
    }
    gt = q.get("ground_truth") or {}
    for k in ("camera_error_rel_median", "camera_error_rel_max", "mesh_distance_rel_median", "mesh_distance_rel_p90",
              "relative_rotation_error_deg_median", "relative_rotation_error_deg_max"):
        if gt.get(k) is not None:
            row[k] = round(gt[k], 5)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=CASES, default=list(CASES))
    ap.add_argument("--threads", type=int, default=-1, help="pycolmap threads (-1: all cores)")
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out", help="where the generated building is kept")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "reconstruct.json")
    args = ap.parse_args(argv)
    sizes = {"synthetic": 384, "herzjesu": 1536, "brighton": 800}
    results: dict = {"cpu_count": os.cpu_count(), "cases": {}}
    data = shared_data()
    with tempfile.TemporaryDirectory(prefix="bench-reconstruct-") as tmp:
        for name in args.only:
            if name != "synthetic" and data is None:
                results["cases"][name] = {"skipped": "../shared/data not found"}
                continue
            cfg = ReconstructConfig(max_image_size=sizes[name], num_threads=args.threads)
            results["cases"][name] = run_case(name, cfg, Path(tmp), args.cache)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    cols = ["images", "registered", "extract_s", "match_s", "map_s", "total_s", "cpu_s", "reproj_px", "align_rms",
            "camera_error_rel_max", "mesh_distance_rel_median", "relative_rotation_error_deg_max"]
    print("\n" + "case".ljust(10) + "".join(c[:14].rjust(15) for c in cols))
    for name, row in results["cases"].items():
        print(name.ljust(10) + "".join(_fmt(row.get(c)).rjust(15) for c in cols))
    return results


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
