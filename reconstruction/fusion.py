"""Fusion of consistent depth maps into one coloured point cloud with normals per altitude scale (open3d)."""
from __future__ import annotations

import logging

import numpy as np
import open3d as o3d

from reconstruction.mvs import DepthMap, View

logger = logging.getLogger("skylink")


def kept_mask(m: DepthMap, min_consistent: int) -> np.ndarray:
    """Pixels that pass the photometric mask and agree with at least `min_consistent` neighbours."""
    ok = m.photometric & (m.depth > 0)
    if m.consistent is not None:
        ok &= m.consistent >= min_consistent
    return ok


def valid_share(maps: list[DepthMap], min_consistent: int) -> float:
    """Share of all depth-map pixels that survive both masks (0 when there are no maps)."""
    total = sum(m.depth.size for m in maps)
    return float(sum(int(kept_mask(m, min_consistent).sum()) for m in maps) / total) if total else 0.0


def fuse_cloud(views: list[View], maps: list[DepthMap], points: list[np.ndarray], min_consistent: int,
               voxel: float, nb_neighbors: int = 20, std_ratio: float = 2.0,
               crop: tuple[np.ndarray, float] | None = None) -> o3d.geometry.PointCloud:
    """Kept pixels of the given views as one cloud: voxel-averaged, outliers removed, normals facing the cameras.

    `crop` = (axis x, y; radius) keeps the points within that horizontal distance of a vertical axis.
    """
    xyz, rgb, to_cam = [], [], []
    for v, m, p in zip(views, maps, points):
        ok = kept_mask(m, min_consistent)
        if crop is not None:
            ok &= np.linalg.norm(p[..., :2] - np.asarray(crop[0])[:2], axis=-1) <= crop[1]
        if not ok.any():
            continue
        pts = p[ok].astype(np.float64)
        xyz.append(pts)
        rgb.append(v.rgb[ok].astype(np.float64) / 255.0)
        d = v.centre[None] - pts
        to_cam.append(d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12))
    pcd = o3d.geometry.PointCloud()
    if not xyz:
        return pcd
    pcd.points = o3d.utility.Vector3dVector(np.concatenate(xyz))
    pcd.colors = o3d.utility.Vector3dVector(np.concatenate(rgb))
    # The direction to the camera rides along as a provisional normal: voxel averaging keeps it and
    # estimate_normals orients the fitted normals to agree with it (towards the cameras that saw them).
    pcd.normals = o3d.utility.Vector3dVector(np.concatenate(to_cam))
    if voxel > 0:
        pcd = pcd.voxel_down_sample(voxel)
    if nb_neighbors > 0 and len(pcd.points) > nb_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    if len(pcd.points) >= 3:
        radius = 4 * voxel if voxel > 0 else 0.0
        search = (o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=16) if radius > 0
                  else o3d.geometry.KDTreeSearchParamKNN(20))
        pcd.estimate_normals(search)
    return pcd


def fuse_scales(views: list[View], maps: list[DepthMap], points: list[np.ndarray], groups: dict[str, int],
                n_scales: int, min_consistent: int, voxel: float, nb_neighbors: int = 20,
                std_ratio: float = 2.0, crop: tuple[np.ndarray, float] | None = None) -> dict[int, o3d.geometry.PointCloud]:
    """One fused cloud per altitude group k = 1..n_scales, from the depth maps of that group's images."""
    out = {}
    for k in range(1, n_scales + 1):
        idx = [i for i, v in enumerate(views) if groups.get(v.name) == k]
        out[k] = fuse_cloud([views[i] for i in idx], [maps[i] for i in idx], [points[i] for i in idx],
                            min_consistent, voxel, nb_neighbors, std_ratio, crop)
    return out
