"""Multi-scale point clouds: scale k holds the 3D points seen by the drone images of altitude group k."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap

logger = logging.getLogger("skylink")

_UNIVERSITY_NAME = re.compile(r"^image-(\d+)\.[a-z]+$", re.IGNORECASE)
UNIVERSITY_IMAGES = 54
_EMPTY_PLY = ("ply\nformat ascii 1.0\nelement vertex 0\nproperty double x\nproperty double y\nproperty double z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")  # University-1652: image-01 ... image-54, 18 per altitude group


def default_groups(names: list[str], n_scales: int = 3) -> dict[str, int]:
    """Altitude group (1..n_scales) of each image.

    University-1652 names (image-01 ... image-54) are grouped by their number (01-18 -> 1, 19-36 -> 2,
    37-54 -> 3 for three scales), so a missing or broken image does not shift the others; any other
    naming is split into equal runs of the sorted order (the spiral is captured from high to low).
    """
    names = sorted(names)
    nums = [_UNIVERSITY_NAME.match(n) for n in names]
    if names and all(nums) and all(1 <= int(m.group(1)) <= UNIVERSITY_IMAGES for m in nums) and len(names) > UNIVERSITY_IMAGES // 2:
        return {n: min(n_scales, (int(m.group(1)) - 1) * n_scales // UNIVERSITY_IMAGES + 1) for n, m in zip(names, nums)}
    return {n: i * n_scales // len(names) + 1 for i, n in enumerate(names)}


def scale_point_ids(rec: pycolmap.Reconstruction, groups: dict[str, int], n_scales: int) -> dict[int, list[int]]:
    """Ids of the 3D points observed by at least one image of each group (a point can be in several)."""
    group_of_image = {im.image_id: groups.get(im.name) for im in rec.images.values()}
    out: dict[int, list[int]] = {k: [] for k in range(1, n_scales + 1)}
    for pid, p in rec.points3D.items():
        seen = {group_of_image.get(el.image_id) for el in p.track.elements}
        for k in seen:
            if k in out:
                out[k].append(pid)
    return out


def clean_cloud(xyz: np.ndarray, rgb: np.ndarray, nb_neighbors: int, std_ratio: float, voxel: float) -> o3d.geometry.PointCloud:
    """Statistical outlier removal, then voxel downsampling (colours averaged per voxel)."""
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64).reshape(-1, 3))
    pcd.colors = o3d.utility.Vector3dVector(np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0)
    if nb_neighbors > 0 and len(pcd.points) > nb_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    if voxel > 0 and len(pcd.points):
        pcd = pcd.voxel_down_sample(voxel)
    return pcd


def scale_clouds(rec: pycolmap.Reconstruction, groups: dict[str, int], n_scales: int,
                 nb_neighbors: int, std_ratio: float, voxel: float) -> dict[int, o3d.geometry.PointCloud]:
    """The cleaned point cloud of each scale k = 1..n_scales."""
    clouds = {}
    for k, pids in scale_point_ids(rec, groups, n_scales).items():
        xyz = np.array([rec.points3D[i].xyz for i in pids]).reshape(-1, 3)
        rgb = np.array([rec.points3D[i].color for i in pids]).reshape(-1, 3)
        clouds[k] = clean_cloud(xyz, rgb, nb_neighbors, std_ratio, voxel)
    return clouds


def write_clouds(clouds: dict[int, o3d.geometry.PointCloud], out: Path, prefix: str = "scale") -> dict[int, int]:
    """Write `{prefix}{k}.ply` (binary) per scale; returns the number of points written per scale."""
    counts = {}
    for k, pcd in clouds.items():
        path = out / f"{prefix}{k}.ply"
        if len(pcd.points):
            o3d.io.write_point_cloud(str(path), pcd, write_ascii=False)
        else:  # open3d refuses to write an empty cloud; readers still get a valid file
            logger.warning("%s: scale %d has no points (its images did not register)", out, k)
            path.write_text(_EMPTY_PLY)
        counts[k] = len(pcd.points)
    return counts
