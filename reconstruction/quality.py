"""Quality of a reconstruction: model statistics and, where ground truth exists, pose and geometry errors.

Ground truth (`ground_truth` of `reconstruct_scene`) is a dict:
    {"cameras": {image name: {"cam_from_world": 3x4 [R|t] (OpenCV, metres)}, ...},
     "mesh": path of the scene mesh (PLY, same frame) or None,
     "orbit_radius": metres or None (then taken from the ground-truth camera centres),
     "building_size": metres (largest side of the building's box) or None}
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap

from reconstruction.align import camera_centres, estimate_similarity, orbit_radius, sim3_apply

logger = logging.getLogger("skylink")


def model_stats(rec: pycolmap.Reconstruction) -> dict:
    return {
        "registered": int(rec.num_reg_images()),
        "points3D": int(rec.num_points3D()),
        "mean_reprojection_error": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(rec.compute_mean_track_length()) if rec.num_points3D() else 0.0,
    }


def gt_rotation_centre(cam: dict) -> tuple[np.ndarray, np.ndarray]:
    """(R cam_from_world, camera centre in world) from a ground-truth camera record."""
    P = np.asarray(cam["cam_from_world"], dtype=np.float64).reshape(3, 4)
    R, t = P[:, :3], P[:, 3]
    return R, -R.T @ t


def relative_rotation_errors(rec: pycolmap.Reconstruction, gt_cameras: dict[str, dict]) -> np.ndarray:
    """Angle (degrees) between estimated and true relative rotations, over all registered image pairs."""
    est = {im.name: np.asarray(im.cam_from_world().rotation.matrix()) for im in rec.images.values() if im.has_pose}
    names = sorted(n for n in est if n in gt_cameras)
    gt = {n: gt_rotation_centre(gt_cameras[n])[0] for n in names}
    errs = []
    for a, b in itertools.combinations(names, 2):
        d = (est[a] @ est[b].T) @ (gt[a] @ gt[b].T).T
        errs.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1.0, 1.0))))
    return np.asarray(errs)


def point_to_mesh_distances(points: np.ndarray, mesh_path: Path) -> np.ndarray:
    """Unsigned distance of each point to the triangle mesh (open3d RaycastingScene)."""
    mesh = o3d.io.read_triangle_mesh(str(mesh_path))
    if not len(mesh.triangles):
        raise ValueError(f"{mesh_path}: no triangles in the ground-truth mesh")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    if not len(points):
        return np.zeros(0)
    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, dtype=np.float32))).numpy()


def evaluate_against_ground_truth(rec: pycolmap.Reconstruction, gt: dict, clouds: dict[int, np.ndarray]) -> dict:
    """Camera-centre error (relative to the orbit radius) and point-to-mesh distance (relative to the building).

    Errors are measured after a similarity alignment of the camera centres to the ground truth (the
    frame the reconstruction already has may come from noisy priors or from the orbit alone);
    `camera_error_in_frame_*` is the error without that extra alignment.
    """
    cams = gt.get("cameras") or {}
    est = camera_centres(rec)
    names = sorted(n for n in est if n in cams)
    out: dict = {"gt_images": len(cams), "gt_common": len(names)}
    if len(names) < 3:
        return out
    src = np.stack([est[n] for n in names])
    tgt = np.stack([gt_rotation_centre(cams[n])[1] for n in names])
    radius = float(gt.get("orbit_radius") or orbit_radius(tgt))
    sim, _ = estimate_similarity(src, tgt, max_error=0.05 * radius)
    err = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) / radius
    in_frame = np.linalg.norm(src - tgt, axis=1) / radius
    rot = relative_rotation_errors(rec, cams)
    out |= {
        "orbit_radius": radius,
        "camera_error_rel_median": float(np.median(err)),
        "camera_error_rel_max": float(err.max()),
        "camera_error_rel_mean": float(err.mean()),
        "camera_error_in_frame_rel_median": float(np.median(in_frame)),
        "camera_error_in_frame_rel_max": float(in_frame.max()),
        "relative_rotation_error_deg_median": float(np.median(rot)) if len(rot) else None,
        "relative_rotation_error_deg_max": float(rot.max()) if len(rot) else None,
    }
    mesh = gt.get("mesh")
    size = gt.get("building_size")
    if mesh and size and Path(mesh).is_file():
        per_scale, all_d = {}, []
        for k, xyz in clouds.items():
            d = point_to_mesh_distances(sim3_apply(sim, xyz), Path(mesh)) / float(size) if len(xyz) else np.zeros(0)
            per_scale[str(k)] = float(np.median(d)) if len(d) else None
            all_d.append(d)
        d = np.concatenate(all_d) if all_d else np.zeros(0)
        out |= {
            "building_size": float(size),
            "mesh_distance_rel_median": float(np.median(d)) if len(d) else None,
            "mesh_distance_rel_p90": float(np.percentile(d, 90)) if len(d) else None,
            "mesh_distance_rel_median_per_scale": per_scale,
        }
    return out
