"""Benchmark: per-scene reconstruction time (extract / match / map split) and quality.

Cases: synthetic buildings reconstructed from their images alone, as the `reconstruct` stage does, in
two regimes: `synthetic` without any prior (`synth.drone_exif: none`, as University-1652 and the demo)
and `synthetic_gps` with what a drone writes into EXIF (noisy GPS, focal length); `--world tiny|demo`
and `--buildings N` pick whose buildings (54 images at 256 px; target <= 30 s each on 2 cores; camera
centres within 1% of the orbit radius after a similarity alignment to the ground truth).
../shared/data/herzjesu-p8 (8 real images; relative rotation error vs ground truth) and
../shared/data/brighton-beach (18 real drone photos, not an orbit; aligned to EXIF GPS), the latter
side by side with plain pycolmap and its defaults (extract_features, match_exhaustive,
incremental_mapping). Prints one JSON object, then a table. Wall seconds depend on what else runs on the machine (the 1-minute load average is
recorded); cpu_s is the process's CPU time over all threads, so cpu_s / cores bounds the wall time
of an idle machine from below.

    python bench/bench_reconstruct.py [--only synthetic synthetic_gps herzjesu brighton] [--world demo]
                                      [--buildings 3] [--out bench/out/reconstruct.json]
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reconstruction.config import ReconstructConfig  # noqa: E402
from reconstruction.meta import building_size  # noqa: E402
from reconstruction.scene import reconstruct_scene  # noqa: E402

CASES = ("synthetic", "synthetic_gps", "herzjesu", "brighton")
WORLDS = {"tiny": REPO / "assets" / "configs" / "tiny.yaml", "demo": REPO / "assets" / "configs" / "demo.yaml"}


def shared_data() -> Path | None:
    for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if p.is_dir():
            return p
    return None


def world_config(world: str) -> tuple[dict, dict]:
    """The `synth` and `reconstruct` sections of a world preset."""
    import yaml

    raw = yaml.safe_load(WORLDS[world].read_text())
    return dict(raw.get("synth") or {}), dict(raw.get("reconstruct") or {})


def synthetic_building(cache: Path, world: str, index: int, exif: str) -> Path:
    """One generated building's drone images + cameras.json + building.json + scene.ply (cached)."""
    from synthetic.config import SynthConfig
    from synthetic.generate import build_world, generate_building_drone
    from synthetic.geometry import write_ply

    synth, _ = world_config(world)
    cfg = SynthConfig(**(synth | {"drone_exif": exif}))
    out = cache / f"synthetic-{world}-{index}-{exif}"
    if not (out / "scene.ply").exists():
        generate_building_drone(cfg, out, index)
        write_ply(build_world(cfg)[1], out / "scene.ply")
    return out


def train_indices(world: str, n: int) -> list[int]:
    """Layout indices of the first `n` flown training buildings of a world preset."""
    from synthetic.config import SynthConfig
    from synthetic.generate import flown
    from synthetic.layout import make_layout

    cfg = SynthConfig(**world_config(world)[0])
    layout = make_layout(cfg)
    ids = flown(cfg, layout)
    return [b.index for b in layout.buildings if b.split == "train" and b.id in ids][:n]


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


def plain_pycolmap(images: Path, work: Path) -> dict:
    """The baseline to beat on real photos: pycolmap with its defaults, exhaustive matching."""
    import pycolmap

    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    t0, c0 = time.perf_counter(), _cpu_seconds()
    pycolmap.extract_features(db, images)
    pycolmap.match_exhaustive(db)
    models = pycolmap.incremental_mapping(db, images, work / "sparse")
    best = max(models.values(), key=lambda r: r.num_reg_images()) if models else None
    return {"registered": best.num_reg_images() if best else 0, "models": len(models),
            "points3D": best.num_points3D() if best else 0,
            "total_s": round(time.perf_counter() - t0, 2), "cpu_s": round(_cpu_seconds() - c0, 2)}


def sfm_only(cfg: ReconstructConfig) -> ReconstructConfig:
    """The config without the dense step (not what this bench times): SfM, alignment, sparse clouds."""
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, dense="sparse") if "dense" in names else cfg


def run_case(name: str, cfg: ReconstructConfig, work: Path, images: Path, kwargs: dict) -> dict:
    cfg = sfm_only(cfg)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    q = reconstruct_scene(images, work / name, cfg, **kwargs)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    row = {
        "images": q["total"], "registered": q["registered"], "max_image_size": cfg.max_image_size,
        "matcher": q["matcher"], "priors_from": q["priors_from"], "intrinsics_from": q["intrinsics_from"],
        "points3D": q["points3D"], "reproj_px": round(q["mean_reprojection_error"], 3),
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
    ap.add_argument("--world", choices=sorted(WORLDS), default="tiny", help="whose buildings the synthetic cases fly")
    ap.add_argument("--buildings", type=int, default=1, help="synthetic buildings per regime")
    ap.add_argument("--threads", type=int, default=-1, help="pycolmap threads (-1: all cores)")
    ap.add_argument("--no-plain", action="store_true", help="skip plain pycolmap on brighton-beach")
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out", help="where generated buildings are kept")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "reconstruct.json")
    args = ap.parse_args(argv)
    results: dict = {"cpu_count": os.cpu_count(), "world": args.world, "cases": {}}
    data = shared_data()
    # what `skylink reconstruct --images` runs with the default preset (demo.yaml)
    base = ReconstructConfig(**(world_config("demo")[1] | {"num_threads": args.threads}))
    with tempfile.TemporaryDirectory(prefix="bench-reconstruct-") as tmp:
        for name in args.only:
            if name.startswith("synthetic"):
                exif = "gps_focal" if name == "synthetic_gps" else "none"
                cfg = ReconstructConfig(**(world_config(args.world)[1] | {"num_threads": args.threads}))
                for index in train_indices(args.world, args.buildings):
                    folder = synthetic_building(args.cache, args.world, index, exif)
                    key = f"{name}/{args.world}-{index}"
                    results["cases"][key] = run_case(key.replace("/", "-"), cfg, Path(tmp), folder,
                                                     {"ground_truth": synthetic_inputs(folder)["ground_truth"]})
                continue
            if data is None:
                results["cases"][name] = {"skipped": "../shared/data not found"}
                continue
            if name == "herzjesu":
                cfg = ReconstructConfig(max_image_size=1536, num_threads=args.threads)
                results["cases"][name] = run_case(name, cfg, Path(tmp), data / "herzjesu-p8" / "images",
                                                  {"ground_truth": herzjesu_gt(data / "herzjesu-p8")})
            else:
                images = data / "brighton-beach" / "images"
                results["cases"][name] = run_case(name, base, Path(tmp), images, {})
                if not args.no_plain:
                    results["cases"]["brighton_plain_pycolmap"] = plain_pycolmap(images, Path(tmp) / "plain")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    cols = ["images", "registered", "extract_s", "match_s", "map_s", "total_s", "cpu_s", "reproj_px", "align_rms",
            "camera_error_rel_median", "camera_error_rel_max", "mesh_distance_rel_median", "relative_rotation_error_deg_max"]
    print("\n" + "case".ljust(28) + "".join(c[:14].rjust(15) for c in cols))
    for name, row in results["cases"].items():
        print(name.ljust(28) + "".join(_fmt(row.get(c)).rjust(15) for c in cols))
    return results


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
