"""Dense reconstruction of one building: backend choice (COLMAP PatchMatch on CUDA, torch MVS elsewhere,
or the sparse clouds), depth maps, fusion per altitude scale, and the fallback to the sparse clouds."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pycolmap
import torch

from reconstruction.config import ReconstructConfig
from reconstruction.fusion import fuse_scales, valid_share
from reconstruction.mvs import DepthMap, MVSOptions, View, geometric_consistency, load_views, resolve_device, run_mvs

logger = logging.getLogger("skylink")

BACKENDS = ("auto", "torch", "colmap", "sparse")
MIN_VIEWS = 3
MIN_POINTS = 200  # fused points over all scales below which the dense clouds are not worth keeping


@dataclass
class DenseResult:
    """What the dense step produced; `clouds` is None when it fell back to the sparse clouds."""

    backend: str
    clouds: dict[int, o3d.geometry.PointCloud] | None
    fallback: str | None = None
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    views: list[View] = field(default_factory=list, repr=False)     # for figures and checks; not written
    maps: list[DepthMap] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        pts = {str(k): len(c.points) for k, c in (self.clouds or {}).items()}
        return {"backend": self.backend, "fallback": self.fallback, "seconds": round(self.seconds, 3),
                "points_per_scale": pts} | self.stats


def pycolmap_has_cuda() -> bool:
    return bool(getattr(pycolmap, "has_cuda", False))


def pick_backend(requested: str, has_cuda: bool | None = None) -> str:
    """The backend that runs: `auto` is COLMAP PatchMatch where pycolmap was built with CUDA, else torch.

    COLMAP's PatchMatch has no CPU implementation, so an explicit `colmap` without CUDA runs torch
    (with a warning) instead of failing the building.
    """
    if requested not in BACKENDS:
        raise ValueError(f"reconstruct.dense: {requested!r} is not one of {BACKENDS}")
    cuda = pycolmap_has_cuda() if has_cuda is None else has_cuda
    if requested == "auto":
        return "colmap" if cuda else "torch"
    if requested == "colmap" and not cuda:
        logger.warning("reconstruct.dense = colmap but this pycolmap has no CUDA; using the torch MVS")
        return "torch"
    return requested


def mvs_options(cfg: ReconstructConfig) -> MVSOptions:
    return MVSOptions(max_image_size=cfg.mvs_max_image_size, n_planes=cfg.mvs_planes, n_sources=cfg.mvs_sources,
                      window=cfg.mvs_window, min_score=cfg.mvs_min_score, min_consistent=cfg.mvs_min_consistent,
                      refine_planes=cfg.mvs_refine_planes, refine_rounds=cfg.mvs_refine_rounds,
                      refine_smooth=cfg.mvs_refine_smooth,
                      coarse_factor=cfg.mvs_coarse_factor,
                      geo_views=cfg.mvs_geo_views, geo_pixel_error=cfg.mvs_geo_pixel_error,
                      geo_depth_error=cfg.mvs_geo_depth_error, device=cfg.mvs_device)


# ---------------------------------------------------------------- COLMAP PatchMatch (CUDA builds only)

def read_colmap_array(path: Path) -> np.ndarray:
    """A COLMAP depth/normal map file: text header `width&height&channels&`, then column-major float32."""
    with open(path, "rb") as f:
        header = b""
        while header.count(b"&") < 3:
            header += f.read(1)
        w, h, c = (int(x) for x in header.split(b"&")[:3])
        data = np.fromfile(f, np.float32)
    return data.reshape((w, h, c), order="F").transpose(1, 0, 2).squeeze()


def colmap_depth_maps(rec: pycolmap.Reconstruction, image_dir: Path, work: Path, opts: MVSOptions,
                      num_threads: int = -1) -> tuple[list[View], list[DepthMap]]:
    """Undistort, run PatchMatch stereo (geometric consistency on) and read its depth maps as DepthMaps."""
    sparse = work / "sparse-in"
    sparse.mkdir(parents=True, exist_ok=True)
    rec.write_binary(sparse)
    ws = work / "colmap"
    und = pycolmap.UndistortCameraOptions()
    und.max_image_size = opts.max_image_size
    pycolmap.undistort_images(ws, sparse, image_dir, undistort_options=und, num_threads=num_threads)
    pm = pycolmap.PatchMatchOptions()
    pm.max_image_size = opts.max_image_size
    pm.geom_consistency = True
    pycolmap.patch_match_stereo(ws, options=pm)
    urec = pycolmap.Reconstruction(ws / "sparse")
    views = load_views(urec, ws / "images", opts)
    maps = []
    for v in views:
        f = ws / "stereo" / "depth_maps" / f"{v.name}.geometric.bin"
        h, w = v.rgb.shape[:2]
        d = read_colmap_array(f) if f.is_file() else np.zeros((h, w), np.float32)
        if d.shape != (h, w):
            d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
        d = np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)
        maps.append(DepthMap(d, (d > 0).astype(np.float32), d > 0))
    return views, maps


# ---------------------------------------------------------------- entry

def dense_clouds(rec: pycolmap.Reconstruction, image_dir: Path, groups: dict[str, int], cfg: ReconstructConfig,
                 radius: float, work: Path | None = None) -> DenseResult:
    """Dense clouds per scale of an aligned model (z up) whose images are in `image_dir`.

    `radius` is the orbit radius (frame units): the voxel size and the crop around the orbit axis
    (`dense_crop_radius`; the drone circles the target building) are fractions of it.

    Returns `clouds=None` with the reason in `fallback` when the images give no usable depth (too few
    views, textureless or dark images, too few consistent pixels); the caller keeps the sparse clouds.
    """
    t0 = time.perf_counter()
    backend = pick_backend(cfg.dense)
    if backend == "sparse":
        return DenseResult("sparse", None, "reconstruct.dense = sparse", 0.0)
    opts = mvs_options(cfg)
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        if backend == "colmap":
            import tempfile

            with tempfile.TemporaryDirectory(prefix="skylink-mvs-", dir=work) as tmp:
                views, maps = colmap_depth_maps(rec, image_dir, Path(tmp), opts, cfg.num_threads)
            with torch.no_grad():
                points = [p.cpu().numpy() for p in geometric_consistency(views, maps, opts, resolve_device(opts.device))]
        else:
            views, maps, points = run_mvs(rec, image_dir, opts, progress=logger.isEnabledFor(logging.DEBUG))
    finally:
        torch.set_num_threads(threads)
    t_depth = time.perf_counter() - t0
    share = valid_share(maps, opts.min_consistent)
    photo = sum(int(m.photometric.sum()) for m in maps)
    stats = {
        "views": len(views),
        "depth_size": list(maps[0].depth.shape[::-1]) if maps else None,
        "valid_share": round(share, 4),
        "photometric_share": round(photo / max(1, sum(m.depth.size for m in maps)), 4),
        # of the photometrically confident pixels, the share that a neighbour's depth map confirms
        "consistent_share": round(share * sum(m.depth.size for m in maps) / max(1, photo), 4),
    }
    if len(views) < MIN_VIEWS:
        reason = f"only {len(views)} registered images with a depth range (need {MIN_VIEWS})"
        return DenseResult(backend, None, reason, time.perf_counter() - t0, stats, views, maps)
    if share < cfg.dense_min_valid:
        reason = (f"only {share:.1%} of depth-map pixels are photometrically and geometrically consistent "
                  f"(< dense_min_valid {cfg.dense_min_valid:.1%}): textureless, dark or too few overlapping images")
        return DenseResult(backend, None, reason, time.perf_counter() - t0, stats, views, maps)
    t = time.perf_counter()
    crop = None
    if cfg.dense_crop_radius > 0:
        axis = np.mean([v.centre for v in views], axis=0)
        crop = (axis, cfg.dense_crop_radius * radius)
    clouds = fuse_scales(views, maps, points, groups, cfg.n_scales, opts.min_consistent,
                         cfg.dense_voxel_size * radius, cfg.dense_outlier_neighbors, cfg.outlier_std_ratio, crop,
                         cfg.dense_min_pixels)
    total = sum(len(c.points) for c in clouds.values())
    stats |= {"seconds_depth": round(t_depth, 3), "seconds_fusion": round(time.perf_counter() - t, 3)}
    if total < MIN_POINTS:
        return DenseResult(backend, None, f"only {total} fused points (< {MIN_POINTS})", time.perf_counter() - t0,
                           stats, views, maps)
    return DenseResult(backend, clouds, None, time.perf_counter() - t0, stats, views, maps)
