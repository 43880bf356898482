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


def pixel_normals(points: np.ndarray, valid: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per-pixel normals [H,W,3] of a depth map's world points, facing the camera at `centre`.

    The cross product of the point map's central differences, as COLMAP's fusion carries each pixel's
    normal into the fused point instead of fitting planes to the cloud afterwards (a k-NN search over
    every fused point cost 4 s of the 54-image building's 8 s of fusion). Pixels without depth on all
    four sides (edges, occlusion boundaries) take the direction to the camera.
    """
    p = points.astype(np.float64)
    dx, dy = np.zeros_like(p), np.zeros_like(p)
    dx[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dy[1:-1] = p[2:] - p[:-2]
    n = np.cross(dx, dy)
    to_cam = np.asarray(centre, np.float64) - p
    to_cam /= np.linalg.norm(to_cam, axis=-1, keepdims=True) + 1e-12
    inner = np.zeros_like(valid)
    inner[1:-1, 1:-1] = valid[1:-1, :-2] & valid[1:-1, 2:] & valid[:-2, 1:-1] & valid[2:, 1:-1]
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    inner &= length[..., 0] > 0
    n = n / np.maximum(length, 1e-300)
    n *= np.where(np.sum(n * to_cam, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return np.where(inner[..., None], n, to_cam)


def voxel_average(voxel: float, *columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per occupied voxel of the first array's points, the mean of each [N,C] array and the count.

    open3d's voxel_down_sample averages the same way but does not say how many pixels each point
    stands for, which `min_pixels` needs (COLMAP's fusion keeps a point of at least min_num_pixels).
    """
    key = np.floor(columns[0] / voxel).astype(np.int64)
    key -= key.min(axis=0)
    span = key.max(axis=0) + 1
    _, inverse, counts = np.unique((key[:, 0] * span[1] + key[:, 1]) * span[2] + key[:, 2],
                                   return_inverse=True, return_counts=True)
    means = [np.stack([np.bincount(inverse, c[:, j], minlength=len(counts)) for j in range(c.shape[1])], 1)
             / counts[:, None] for c in columns]
    return means, counts


def fuse_cloud(views: list[View], maps: list[DepthMap], points: list[np.ndarray], min_consistent: int,
               voxel: float, nb_neighbors: int = 0, std_ratio: float = 2.0,
               crop: tuple[np.ndarray, float] | None = None, min_pixels: int = 1) -> o3d.geometry.PointCloud:
    """Kept pixels of the given views as one cloud: voxel-averaged points, colours and per-pixel normals.

    `min_pixels` drops voxels fused from fewer pixels; `nb_neighbors` > 0 adds open3d's statistical
    outlier removal. Both trade completeness for accuracy and are off by default (README).
    `crop` = (axis x, y; radius) keeps the points within that horizontal distance of a vertical axis.
    """
    xyz, rgb, nrm = [], [], []
    for v, m, p in zip(views, maps, points):
        ok = kept_mask(m, min_consistent)
        if crop is not None:
            ok &= np.linalg.norm(p[..., :2] - np.asarray(crop[0])[:2], axis=-1) <= crop[1]
        if not ok.any():
            continue
        xyz.append(p[ok].astype(np.float64))
        rgb.append(v.rgb[ok].astype(np.float64) / 255.0)
        nrm.append(pixel_normals(p, m.depth > 0, v.centre)[ok])
    pcd = o3d.geometry.PointCloud()
    if not xyz:
        return pcd
    xyz, rgb, nrm = np.concatenate(xyz), np.concatenate(rgb), np.concatenate(nrm)
    if voxel > 0:
        (xyz, rgb, nrm), counts = voxel_average(voxel, xyz, rgb, nrm)
        keep = counts >= min_pixels
        xyz, rgb, nrm = xyz[keep], rgb[keep], nrm[keep]
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    pcd.points = o3d.utility.Vector3dVector(xyz)
    pcd.colors = o3d.utility.Vector3dVector(rgb)
    pcd.normals = o3d.utility.Vector3dVector(nrm)
    if nb_neighbors > 0 and len(pcd.points) > nb_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    return pcd


def fuse_scales(views: list[View], maps: list[DepthMap], points: list[np.ndarray], groups: dict[str, int],
                n_scales: int, min_consistent: int, voxel: float, nb_neighbors: int = 0,
                std_ratio: float = 2.0, crop: tuple[np.ndarray, float] | None = None,
                min_pixels: int = 1) -> dict[int, o3d.geometry.PointCloud]:
    """One fused cloud per altitude group k = 1..n_scales, from the depth maps of that group's images."""
    out = {}
    for k in range(1, n_scales + 1):
        idx = [i for i, v in enumerate(views) if groups.get(v.name) == k]
        out[k] = fuse_cloud([views[i] for i in idx], [maps[i] for i in idx], [points[i] for i in idx],
                            min_consistent, voxel, nb_neighbors, std_ratio, crop, min_pixels)
    return out
