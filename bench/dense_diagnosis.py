"""Diagnosis: what limits the dense clouds' accuracy and completeness on a built world.

For each building of an already reconstructed world (its `reconstruct/<id>/sparse` model and its drone
images) this re-runs only the dense step (reconstruction/dense.py) under named experiments and
measures the result exactly as quality.json's `ground_truth.geometry.dense` does: a similarity from
the estimated to the true camera centres (LO-RANSAC at 5% of the orbit radius, then Umeyama on the
inliers), applied to the union of the scale clouds, then `cloud_quality` at tau = 0.5/1/2% of the
building's size. The experiments separate three causes:

- poses: `gt_*` runs the same dense step on the ground-truth cameras (pose and intrinsics; the SfM points
  moved by the same similarity give the depth ranges and the co-visibility): a measurement-only
  experiment, the stage itself never sees ground truth. `sfm_*` re-runs SfM with other options
  (scratch models under --scratch) from the images alone, as the stage would;
- MVS settings (planes, sources, window, min score, geometric-consistency views and tolerances);
- fusion (voxel size, crop radius, outlier removal).

`baseline` on the stored model reproduces quality.json's figures (checked: `matches_quality_json`).
Results are cached per (experiment, building) in --scratch/results.json, so a run resumes.
Single-threaded by design (the machine is shared):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python bench/dense_diagnosis.py \
        --world work/validation --buildings 8017 0371 5393 8912 --out bench/dense_diagnosis_validation.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pycolmap  # noqa: E402
import torch  # noqa: E402

from reconstruction import dense as dense_mod  # noqa: E402
from reconstruction.align import align_by_orbit, camera_centres, estimate_similarity, orbit_radius, sim3_apply  # noqa: E402
from reconstruction.config import ReconstructConfig  # noqa: E402
from reconstruction.meta import drone_meta  # noqa: E402
from reconstruction.multiscale import default_groups  # noqa: E402
from reconstruction.quality import SceneMesh, cloud_quality, gt_rotation_centre  # noqa: E402
from reconstruction.sfm import list_images, prepare_images, run_sfm  # noqa: E402
from retrieval.metrics import bootstrap_ci  # noqa: E402

TAU = "0.01"
METRICS = ("accuracy", "completeness", "completeness_facades")

# name: poses ("sfm": the stored model, "gt": ground-truth cameras, "sfm:<tag>": SfM re-run with `sfm`
# overrides), cfg (ReconstructConfig overrides of the dense step), mvs (MVSOptions overrides that the
# config does not expose).
EXPERIMENTS: dict[str, dict] = {
    "baseline": {"poses": "sfm"},
    "gt_poses": {"poses": "gt"},
    # MVS settings on SfM poses
    "planes64": {"poses": "sfm", "cfg": {"mvs_planes": 64}},
    "sources5": {"poses": "sfm", "cfg": {"mvs_sources": 5}},
    "window5": {"poses": "sfm", "cfg": {"mvs_window": 5}},
    "window9": {"poses": "sfm", "cfg": {"mvs_window": 9}},
    "min_score0.3": {"poses": "sfm", "cfg": {"mvs_min_score": 0.3}},
    "min_score0.7": {"poses": "sfm", "cfg": {"mvs_min_score": 0.7}},
    "geo_views10": {"poses": "sfm", "cfg": {"mvs_geo_views": 10}},
    "min_consistent2": {"poses": "sfm", "cfg": {"mvs_min_consistent": 2}},
    "geo_tol2x": {"poses": "sfm", "mvs": {"geo_pixel_error": 2.0, "geo_depth_error": 0.008}},
    "depth384": {"poses": "sfm", "cfg": {"mvs_max_image_size": 384}},
    # fine-level refinement (session 12): fewer, wider rounds centred on the raw estimate, then rounds
    # centred on the previous estimate's k x k mean (mvs_refine_smooth; 1 = the raw estimate)
    "refine1_p7": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 1, "mvs_refine_planes": 7, "mvs_refine_smooth": 1}},
    "refine1_p11": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 1, "mvs_refine_planes": 11, "mvs_refine_smooth": 1}},
    "refine2_p5": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 2, "mvs_refine_planes": 5, "mvs_refine_smooth": 1}},
    "refine1_p11_planes48": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 1, "mvs_refine_planes": 11, "mvs_planes": 48,
                                                     "mvs_refine_smooth": 1}},
    "refine2_p11_smooth5": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 2, "mvs_refine_planes": 11, "mvs_refine_smooth": 5}},
    "refine3_p11_smooth5": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 3, "mvs_refine_planes": 11, "mvs_refine_smooth": 5}},
    "refine3_p5_smooth5": {"poses": "sfm", "cfg": {"mvs_refine_rounds": 3, "mvs_refine_planes": 5, "mvs_refine_smooth": 5}},
    # session 14: later rounds centre on the mean of the confident pixels only (a one-step propagation)
    "refine_confident": {"poses": "sfm", "mvs": {"refine_confident": True}},
    # fusion on SfM poses
    "voxel0.002": {"poses": "sfm", "cfg": {"dense_voxel_size": 0.002}},
    "voxel0.008": {"poses": "sfm", "cfg": {"dense_voxel_size": 0.008}},
    "crop0.5": {"poses": "sfm", "cfg": {"dense_crop_radius": 0.5}},
    "outlier_removal": {"poses": "sfm", "cfg": {"dense_outlier_neighbors": 20}},
    "min_pixels2": {"poses": "sfm", "cfg": {"dense_min_pixels": 2}},
    "min_pixels3": {"poses": "sfm", "cfg": {"dense_min_pixels": 3}},
    # the same MVS settings on true poses: what the MVS can reach when poses are not the limit
    "gt_planes64": {"poses": "gt", "cfg": {"mvs_planes": 64}},
    "gt_sources5": {"poses": "gt", "cfg": {"mvs_sources": 5}},
    "gt_window5": {"poses": "gt", "cfg": {"mvs_window": 5}},
    "gt_min_score0.3": {"poses": "gt", "cfg": {"mvs_min_score": 0.3}},
    "gt_geo_views10": {"poses": "gt", "cfg": {"mvs_geo_views": 10}},
    # combinations: more sources and partners buy back the completeness a stricter filter costs
    "src5_geo10_cons2": {"poses": "sfm", "cfg": {"mvs_sources": 5, "mvs_geo_views": 10, "mvs_min_consistent": 2}},
    "src5_geo10_cons2_score0.3": {"poses": "sfm", "cfg": {"mvs_sources": 5, "mvs_geo_views": 10,
                                                          "mvs_min_consistent": 2, "mvs_min_score": 0.3}},
    "src5_geo10_score0.3": {"poses": "sfm", "cfg": {"mvs_sources": 5, "mvs_geo_views": 10, "mvs_min_score": 0.3}},
    # SfM re-run from the images (as the stage runs it, single-threaded) with other options
    "sfm_rerun": {"poses": "sfm:rerun"},
    "sfm_simple_pinhole": {"poses": "sfm:simple_pinhole", "sfm": {"camera_model": "SIMPLE_PINHOLE"}},
    "sfm_global": {"poses": "sfm:global", "sfm": {"mapper": "global"}},
    "sfm_global_src5": {"poses": "sfm:global", "sfm": {"mapper": "global"}, "cfg": {"mvs_sources": 5}},
    "sfm_global_nocrop": {"poses": "sfm:global", "sfm": {"mapper": "global"}, "cfg": {"dense_crop_radius": 0.0}},
    "src5_geo10_cons2_tol2x": {"poses": "sfm", "cfg": {"mvs_sources": 5, "mvs_geo_views": 10, "mvs_min_consistent": 2},
                               "mvs": {"geo_pixel_error": 2.0, "geo_depth_error": 0.008}},
}


# ---------------------------------------------------------------- models

def gt_model(rec: pycolmap.Reconstruction, gt: dict, intrinsics: dict[str, np.ndarray]) -> pycolmap.Reconstruction:
    """A copy of `rec` on the ground-truth cameras (measurement only): true poses and pinhole K, and the
    SfM points moved by the camera-centre similarity (they only give depth ranges and co-visibility)."""
    out = pycolmap.Reconstruction(rec)
    est = camera_centres(out)
    names = sorted(n for n in est if n in gt["cameras"])
    tgt = np.stack([gt_rotation_centre(gt["cameras"][n])[1] for n in names])
    radius = float(gt.get("orbit_radius") or orbit_radius(tgt))
    sim, _ = estimate_similarity(np.stack([est[n] for n in names]), tgt, max_error=0.05 * radius)
    out.transform(sim)
    for im in out.images.values():
        if not im.has_pose or im.name not in gt["cameras"]:
            continue
        P = np.asarray(gt["cameras"][im.name]["cam_from_world"], dtype=np.float64).reshape(3, 4)
        out.frames[im.frame_id].set_cam_from_world(im.camera_id, pycolmap.Rigid3d(pycolmap.Rotation3d(P[:, :3]), P[:, 3]))
    for cid, cam in out.cameras.items():
        name = next(im.name for im in out.images.values() if im.camera_id == cid)
        K = intrinsics[name]
        new = pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                              params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        new.camera_id = cid
        out.cameras[cid] = new
    # the images keep pointers to the old camera objects: re-read through a round trip
    with tempfile.TemporaryDirectory(prefix="dense-diag-") as tmp:
        out.write_binary(tmp)
        return pycolmap.Reconstruction(tmp)


def sfm_model(images: Path, cfg: ReconstructConfig, cache: Path) -> tuple[pycolmap.Reconstruction, float]:
    """SfM from the images alone as the reconstruct stage runs it (no priors: the validation world has no
    GPS), aligned by the orbit; cached in `cache`. Returns the model and the SfM seconds."""
    if (cache / "images.bin").is_file():
        return pycolmap.Reconstruction(cache), json.loads((cache / "seconds.json").read_text())["sfm"]
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dense-diag-sfm-") as tmp:
        scratch = Path(tmp) / "images"
        names, _ = prepare_images(images, scratch)
        res = run_sfm(scratch, names, Path(tmp) / "work", cfg)
    rec = res.reconstruction
    align_by_orbit(rec)
    secs = time.perf_counter() - t
    cache.mkdir(parents=True, exist_ok=True)
    rec.write_binary(cache)
    (cache / "seconds.json").write_text(json.dumps({"sfm": secs} | res.timings))
    return rec, secs


# ---------------------------------------------------------------- measurement (as reconstruction/quality.py)

def measure(rec: pycolmap.Reconstruction, gt: dict, dense: dict[int, np.ndarray] | None, scene: SceneMesh) -> dict:
    """Camera error and the dense cloud's accuracy / completeness, with quality.json's alignment."""
    est = camera_centres(rec)
    names = sorted(n for n in est if n in gt["cameras"])
    src = np.stack([est[n] for n in names])
    tgt = np.stack([gt_rotation_centre(gt["cameras"][n])[1] for n in names])
    radius = float(gt.get("orbit_radius") or orbit_radius(tgt))
    sim, _ = estimate_similarity(src, tgt, max_error=0.05 * radius)
    err = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) / radius
    out = {"registered": len(est), "camera_error_rel_median": round(float(np.median(err)), 5)}
    if dense:
        xyz = np.concatenate([c for c in dense.values() if len(c)] or [np.zeros((0, 3))])
        q = cloud_quality(sim3_apply(sim, xyz) if len(xyz) else xyz, scene, int(gt["building_index"]),
                          float(gt["building_size"]))
        out |= {m: q[m] for m in METRICS} | {"points": q["points"]}
    return out


def visibility(bid: str, world: Path, scene: SceneMesh, min_views: int = 2) -> dict:
    """Upper bound of completeness: the share of quality.py's surface samples of the building (same
    samples) that at least `min_views` drone cameras see unoccluded (ground-truth cameras and mesh)."""
    from bench.completeness_bound import seen_counts
    from reconstruction.quality import building_samples

    root = world / "data" / "tree"
    meta = drone_meta(root, bid, root / "train" / "drone" / bid)
    gt = meta.ground_truth
    samples, normals, facade = building_samples(scene, int(gt["building_index"]))
    ok = seen_counts(samples, normals, gt["cameras"], meta.intrinsics, scene) >= min_views
    return {"visible_share": round(float(ok.mean()), 4), "visible_share_facades": round(float(ok[facade].mean()), 4),
            "min_views": min_views}


def run_one(bid: str, spec: dict, world: Path, scene: SceneMesh, scratch: Path) -> dict:
    root = world / "data" / "tree"
    images = root / "train" / "drone" / bid
    meta = drone_meta(root, bid, images)
    gt = meta.ground_truth
    manifest = json.loads((world / "reconstruct" / "manifest.json").read_text())
    # a cache built before mvs_refine_smooth existed centred every round on the raw estimate
    base = ReconstructConfig(**({"mvs_refine_smooth": 1} | manifest["config"]["reconstruct"]))
    base = dataclasses.replace(base, num_threads=1, dense="torch", mvs_device="cpu")
    poses = spec["poses"]
    sfm_seconds = None
    if poses == "sfm":
        rec = pycolmap.Reconstruction(world / "reconstruct" / bid / "sparse")
    elif poses == "gt":
        rec = gt_model(pycolmap.Reconstruction(world / "reconstruct" / bid / "sparse"), gt, meta.intrinsics)
    elif poses.startswith("sfm:"):
        scfg = dataclasses.replace(base, **spec.get("sfm", {}))
        rec, sfm_seconds = sfm_model(images, scfg, scratch / "sfm" / poses[4:] / bid)
    else:
        raise ValueError(f"unknown poses {poses!r}")
    cfg = dataclasses.replace(base, **spec.get("cfg", {}))
    groups = default_groups([p.name for p in list_images(images)], cfg.n_scales)
    radius = orbit_radius(np.stack(list(camera_centres(rec).values())))
    orig = dense_mod.mvs_options
    if spec.get("mvs"):
        dense_mod.mvs_options = lambda c: dataclasses.replace(orig(c), **spec["mvs"])
    try:
        t = time.perf_counter()
        res = dense_mod.dense_clouds(rec, images, groups, cfg, radius)
        secs = time.perf_counter() - t
    finally:
        dense_mod.mvs_options = orig
    clouds = {k: np.asarray(c.points) for k, c in res.clouds.items()} if res.clouds else None
    out = measure(rec, gt, clouds, scene)
    out |= {"dense_seconds": round(secs, 2), "fallback": res.fallback,
            "valid_share": res.stats.get("valid_share"), "consistent_share": res.stats.get("consistent_share")}
    if sfm_seconds is not None:
        out["sfm_seconds"] = round(sfm_seconds, 2)
    if poses == "sfm":
        stored = json.loads((world / "reconstruct" / bid / "quality.json").read_text())
        out["stored"] = {m: stored["ground_truth"]["geometry"]["dense"][m][TAU] for m in METRICS}
    return out


def summarise(results: dict, buildings: list[str]) -> dict:
    """Medians over buildings per experiment at tau = 1%, and the paired change against the baseline."""
    summary = {}
    base = results.get("baseline", {})
    for name, per in results.items():
        rows = [per[b] for b in buildings if b in per and per[b].get("accuracy")]
        if not rows:
            continue
        s = {m: round(statistics.median(r[m][TAU] for r in rows), 4) for m in METRICS}
        s["camera_error_rel_median"] = round(statistics.median(r["camera_error_rel_median"] for r in rows), 5)
        s["dense_seconds_median"] = round(statistics.median(r["dense_seconds"] for r in rows), 2)
        paired = [b for b in buildings if b in per and b in base and per[b].get("accuracy") and base[b].get("accuracy")]
        if name != "baseline" and paired:
            for m in METRICS:
                diff = np.array([per[b][m][TAU] - base[b][m][TAU] for b in paired])
                s[f"{m}_paired_gain_median"] = round(float(np.median(diff)), 4)
                # mean over buildings with its 95% bootstrap interval: the figure the README reports
                lo, hi = bootstrap_ci(diff) if len(diff) > 1 else (float("nan"), float("nan"))
                s[f"{m}_paired_gain_mean_ci"] = [round(float(diff.mean()), 4), round(float(lo), 4), round(float(hi), 4)]
        s["buildings"] = len(rows)
        summary[name] = s
    return summary


def table(results: dict, summary: dict, buildings: list[str]) -> str:
    head = "| experiment | " + " | ".join(buildings) + " | median acc / compl / fac | paired gain acc / compl |"
    lines = [head, "|" + "---|" * (len(buildings) + 3)]
    for name, per in results.items():
        cells = []
        for b in buildings:
            r = per.get(b)
            cells.append(f"{r['accuracy'][TAU]:.2f} / {r['completeness'][TAU]:.2f}" if r and r.get("accuracy") else "-")
        s = summary.get(name, {})
        med = f"{s['accuracy']:.3f} / {s['completeness']:.3f} / {s['completeness_facades']:.3f}" if s else "-"
        gain = (f"{s['accuracy_paired_gain_median']:+.3f} / {s['completeness_paired_gain_median']:+.3f}"
                if "accuracy_paired_gain_median" in s else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {med} | {gain} |")
    return "\n".join(lines)


def paired_table(summary: dict) -> str:
    """Each experiment's medians and its mean paired change against `baseline`, 95% interval over buildings."""
    lines = ["| experiment | median acc / compl / fac (%) | Δ acc | Δ compl | Δ fac | s per building |",
             "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        cis = [s.get(f"{m}_paired_gain_mean_ci") for m in METRICS]
        cells = [f"{100 * c[0]:+.1f} [{100 * c[1]:+.1f}, {100 * c[2]:+.1f}]" if c else "" for c in cis]
        lines.append(f"| {name} | {100 * s['accuracy']:.1f} / {100 * s['completeness']:.1f} / "
                     f"{100 * s['completeness_facades']:.1f} | " + " | ".join(cells) + f" | {s['dense_seconds_median']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=REPO / "work" / "validation")
    ap.add_argument("--buildings", nargs="+", default=["8017", "0371", "5393", "8912"])
    ap.add_argument("--experiments", nargs="*", default=None, help=f"default: all of {list(EXPERIMENTS)}")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/dense_diag"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cached-only", action="store_true", help="report what --scratch holds; run nothing new")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.scratch.mkdir(parents=True, exist_ok=True)
    cache_file = args.scratch / "results.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    scene = SceneMesh(args.world / "data" / "tree" / "meta" / "scene.ply")
    names = args.experiments or list(EXPERIMENTS)
    results: dict = {}
    for name in names:
        spec = EXPERIMENTS[name]
        results[name] = {}
        for bid in args.buildings:
            key = f"{name}/{bid}"
            if cache.get(key, {}).get("spec") != spec:
                if args.cached_only:
                    continue
                r = run_one(bid, spec, args.world, scene, args.scratch)
                cache[key] = {"spec": spec, "result": r}
                cache_file.write_text(json.dumps(cache, indent=1))
                print(f"{key}: acc {r.get('accuracy', {}).get(TAU)} compl {r.get('completeness', {}).get(TAU)} "
                      f"cam {r['camera_error_rel_median']} {r['dense_seconds']} s", file=sys.stderr, flush=True)
            results[name][bid] = cache[key]["result"]
    vis = {}
    for bid in args.buildings:
        key = f"visibility/{bid}"
        if key not in cache and not args.cached_only:
            cache[key] = visibility(bid, args.world, scene)
            cache_file.write_text(json.dumps(cache, indent=1))
        if key in cache:
            vis[bid] = cache[key]
    results = {n: r for n, r in results.items() if r}  # --cached-only: experiments never run drop out
    summary = summarise(results, args.buildings)
    doc = {"world": str(args.world), "buildings": args.buildings, "tau": TAU,
           "threads": 1, "load_avg_1min": round(os.getloadavg()[0], 2),
           "experiments": {n: EXPERIMENTS[n] for n in results}, "summary": summary,
           "visibility_upper_bound": vis, "results": results}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print("\nacc / compl at tau = 1% per building\n" + table(results, summary, args.buildings))
    print("\nagainst baseline, paired over the buildings (mean, 95% bootstrap interval)\n" + paired_table(summary))
    print("\nvisible from >= 2 drone cameras (completeness bound), all / facades: "
          + ", ".join(f"{b} {v['visible_share']:.2f} / {v['visible_share_facades']:.2f}" for b, v in vis.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
