"""One scene (building) from a folder of drone images to an aligned COLMAP model, scale clouds and quality.json."""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d
from PIL import Image

from reconstruction.align import align_by_orbit, align_to_priors, camera_centres, orbit_radius
from reconstruction.config import ReconstructConfig
from reconstruction.dense import dense_clouds
from reconstruction.focal import read_exif_focal
from reconstruction.gps import exif_gps_priors
from reconstruction.mesh import MESH, poisson_mesh
from reconstruction.multiscale import default_groups, scale_clouds, write_clouds
from reconstruction.quality import evaluate_against_ground_truth, model_stats
from reconstruction.sfm import ReconstructionError, list_images, prepare_images, run_sfm

logger = logging.getLogger("skylink")

QUALITY = "quality.json"


def _pick_priors(images: Path, names: list[str], cfg: ReconstructConfig,
                 position_priors: dict[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], str, dict]:
    """Position priors for the images, where they came from, and extra facts to record."""
    if not cfg.use_position_priors:
        return {}, "none", {}
    if position_priors:
        pri = {n: np.asarray(position_priors[n], dtype=np.float64).reshape(3) for n in names if n in position_priors}
        return pri, "priors", {}
    if cfg.use_exif_gps:
        pri, origin = exif_gps_priors(images, names)
        if len(pri) >= 3:
            return pri, "gps", {"gps_origin_lat_lon_alt": origin.tolist(), "frame": "local ENU metres"}
    return {}, "none", {}


def _exif_focals(images: Path, names: list[str], cfg: ReconstructConfig) -> dict[str, float]:
    """Focal length in pixels per image whose EXIF gives one (none when cfg.use_exif_focal is off)."""
    if not cfg.use_exif_focal:
        return {}
    out = {}
    for n in names:
        with Image.open(images / n) as im:  # header only: the size the focal is relative to
            size = im.size
        f = read_exif_focal(images / n, *size)
        if f is not None:
            out[n] = f[0]
    return out


def reconstruct_scene(images: Path, out: Path, cfg: ReconstructConfig, *,
                      position_priors: dict[str, np.ndarray] | None = None,
                      intrinsics: dict[str, np.ndarray] | None = None,
                      groups: dict[str, int] | None = None,
                      ground_truth: dict | None = None) -> dict:
    """Reconstruct the images in `images` into `out` and return the quality record.

    Writes `sparse/` (binary COLMAP model in a metric gravity-up frame), `scale{k}.ply` for
    k = 1..cfg.n_scales (dense, `reconstruction.dense`; the sparse clouds where it falls back),
    `sparse_scale{k}.ply` and `quality.json`. Dicts are keyed by image file name: `position_priors`
    are camera centres (metres, z up), `intrinsics` 3x3 K matrices, `groups` the altitude group of
    each image (default: `default_groups`), `ground_truth` as described in `reconstruction.quality`.
    Raises ReconstructionError naming the reason when the scene cannot be reconstructed.
    """
    images, out = Path(images), Path(out)
    t_start = time.perf_counter()
    all_names = [p.name for p in list_images(images)]
    if not all_names:
        raise ReconstructionError(f"{images}: no images ({', '.join(s.lstrip('.') for s in ('.jpg', '.png'))} ...) found")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skylink-sfm-") as tmp:
        scratch = Path(tmp) / "images"
        names, skipped = prepare_images(images, scratch)
        if len(names) < 3:
            raise ReconstructionError(f"{images}: only {len(names)} decodable images of {len(all_names)}; need at least 3")
        priors, prior_source, prior_extra = _pick_priors(images, names, cfg, position_priors)
        focals = {} if intrinsics else _exif_focals(images, names, cfg)
        sfm = run_sfm(scratch, names, Path(tmp) / "work", cfg, intrinsics=intrinsics, priors=priors or None,
                      focal_priors=focals or None, flight=all_names)
    rec = sfm.reconstruction
    registered = rec.num_reg_images()
    ratio = registered / len(all_names)
    warnings = []
    if registered < 3:
        raise ReconstructionError(f"{images}: only {registered} of {len(all_names)} images registered; need at least 3")
    if ratio < cfg.min_registered_ratio:
        # A partial model still carries the building's geometry: keep the largest one and say so.
        warnings.append(f"only {registered} of {len(all_names)} images registered ({ratio:.0%} < "
                        f"min_registered_ratio {cfg.min_registered_ratio:.0%}); kept the largest of "
                        f"{sfm.n_models} models")
        logger.warning("%s: %s", images, warnings[-1])

    t = time.perf_counter()
    alignment = None
    if priors:
        alignment = align_to_priors(rec, priors, cfg.align_max_error, method=prior_source, seed=cfg.seed)
        if alignment is None:
            logger.warning("%s: fewer than 3 registered images have position priors; aligning by the orbit", images)
    if alignment is None:
        alignment = align_by_orbit(rec)
    alignment.extra |= prior_extra
    sparse = out / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    rec.write_binary(sparse)
    t_align = time.perf_counter() - t

    t = time.perf_counter()
    groups = groups or default_groups(all_names, cfg.n_scales)
    centres = np.stack(list(camera_centres(rec).values()))
    radius = orbit_radius(centres)
    clouds = scale_clouds(rec, groups, cfg.n_scales, cfg.outlier_neighbors, cfg.outlier_std_ratio, cfg.voxel_size * radius)
    sparse_counts = write_clouds(clouds, out, prefix="sparse_scale")
    t_clouds = time.perf_counter() - t

    # Dense clouds become scale{k}.ply (what render reads); without usable depth the sparse ones do.
    dense = dense_clouds(rec, images, groups, cfg, radius, work=out)
    if dense.fallback and dense.backend != "sparse":
        logger.warning("%s: dense reconstruction fell back to the sparse clouds: %s", images, dense.fallback)
    counts = write_clouds(dense.clouds or clouds, out)
    t_mesh, mesh_faces = 0.0, None
    (out / MESH).unlink(missing_ok=True)   # a mesh of an earlier run into the same --out is not this one's
    if cfg.dense_mesh and dense.clouds:
        t = time.perf_counter()
        mesh = poisson_mesh(list(dense.clouds.values()), depth=cfg.dense_mesh_depth, threads=cfg.num_threads)
        mesh_faces = len(mesh.triangles)
        if mesh_faces:
            o3d.io.write_triangle_mesh(str(out / MESH), mesh, write_ascii=False)
        t_mesh = time.perf_counter() - t

    reg_names = {im.name for im in rec.images.values() if im.has_pose}
    quality = {
        "images": str(images),
        "total": len(all_names),
        "decodable": len(names),
        "skipped": skipped,
        "registered": registered,
        "registered_ratio": ratio,
        "registered_per_scale": {str(k): sum(1 for n in reg_names if groups.get(n) == k) for k in range(1, cfg.n_scales + 1)},
        "images_per_scale": {str(k): sum(1 for n in all_names if groups.get(n) == k) for k in range(1, cfg.n_scales + 1)},
        **{k: v for k, v in model_stats(rec).items() if k != "registered"},
        "points_per_scale": {str(k): v for k, v in counts.items()},
        "sparse_points_per_scale": {str(k): v for k, v in sparse_counts.items()},
        "dense": dense.to_dict() | ({"mesh_triangles": mesh_faces} if mesh_faces is not None else {}),
        "orbit_radius": radius,
        "matcher": sfm.matcher,
        "mapper": sfm.mapper,
        **({"mapper_check": sfm.mapper_check.to_dict()} if sfm.mapper_check else {}),
        **({"flight_order": sfm.flight_order.to_dict()} if sfm.flight_order else {}),
        "verified_pairs": sfm.n_pairs,
        "models": sfm.n_models,
        "known_intrinsics": sfm.known_intrinsics,
        "intrinsics_from": "given" if sfm.known_intrinsics else ("exif" if sfm.focal_prior else "default"),
        "focal_prior_px": sfm.focal_prior,
        "priors_from": prior_source,
        "warnings": warnings,
        "alignment": alignment.to_dict(),
        "seconds": {k: round(v, 3) for k, v in
                    (sfm.timings | {"align": t_align, "clouds": t_clouds, "dense": dense.seconds}
                     | ({"mesh": t_mesh} if cfg.dense_mesh else {})).items()},
    }
    if ground_truth:
        t = time.perf_counter()
        quality["ground_truth"] = evaluate_against_ground_truth(
            rec, ground_truth, {k: np.asarray(c.points) for k, c in clouds.items()},
            {k: np.asarray(c.points) for k, c in dense.clouds.items()} if dense.clouds else None)
        quality["seconds"]["evaluate"] = round(time.perf_counter() - t, 3)
    quality["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
    (out / QUALITY).write_text(json.dumps(quality, indent=2) + "\n")
    logger.info("%s: %d/%d registered, %.2f px, aligned by %s", images, registered, len(all_names),
                quality["mean_reprojection_error"], alignment.method)
    return quality
