"""Alignment of a reconstruction into a metric, gravity-up local frame (z up).

With position priors (ground-truth cameras, or EXIF GPS in local ENU metres) a robust similarity
maps reconstructed camera centres onto them. Without priors the drone orbit itself gives the frame:
cameras fly above the scene, so up is the mean direction from the scene to the cameras, refined by
the cameras being level (a gimbal keeps the image x axis horizontal, so up is the direction
orthogonal to all x axes); the orbit radius becomes the unit of length.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pycolmap

logger = logging.getLogger("skylink")


@dataclass
class Alignment:
    """How a reconstruction was put into its frame; `new_from_old` has been applied to it."""

    method: str                       # priors | gps | orbit
    new_from_old: pycolmap.Sim3d
    residual_rms: float | None = None     # inlier camera centres vs priors, frame units
    residual_median: float | None = None
    residual_rms_all: float | None = None
    n_inliers: int = 0
    n_common: int = 0
    unit: str = "metre"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        s = self.new_from_old
        return {
            "method": self.method,
            "unit": self.unit,
            "scale": float(s.scale),
            "residual_rms": self.residual_rms,
            "residual_median": self.residual_median,
            "residual_rms_all": self.residual_rms_all,
            "inliers": self.n_inliers,
            "common_images": self.n_common,
        } | self.extra


def camera_centres(rec: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """World positions of the registered images' projection centres, keyed by image name."""
    return {im.name: np.asarray(im.projection_center()) for im in rec.images.values() if im.has_pose}


def sim3_apply(s: pycolmap.Sim3d, x: np.ndarray) -> np.ndarray:
    m = np.asarray(s.matrix())
    return x @ m[:, :3].T + m[:, 3]


def estimate_similarity(src: np.ndarray, tgt: np.ndarray, max_error: float, seed: int = 0) -> tuple[pycolmap.Sim3d, np.ndarray]:
    """tgt_from_src by LO-RANSAC, refined by Umeyama on the inliers; returns it and the inlier mask."""
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = float(max_error)
    ransac.random_seed = seed
    report = pycolmap.estimate_sim3d_robust(src, tgt, ransac)
    sim = report["tgt_from_src"] if report else None
    if sim is None:
        sim = pycolmap.estimate_sim3d(src, tgt)
    if sim is None:
        raise ValueError("degenerate camera positions: no similarity transform (are the cameras collinear?)")
    inliers = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) <= max_error
    if inliers.sum() >= 3:
        refined = pycolmap.estimate_sim3d(src[inliers], tgt[inliers])
        if refined is not None:
            sim = refined
            inliers = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) <= max_error
    return sim, inliers


def align_to_priors(rec: pycolmap.Reconstruction, priors: dict[str, np.ndarray], max_error_fraction: float,
                    method: str = "priors", seed: int = 0) -> Alignment | None:
    """Map camera centres onto the priors (robust similarity) and apply it; None with < 3 common images."""
    centres = camera_centres(rec)
    common = sorted(n for n in centres if n in priors)
    if len(common) < 3:
        return None
    src = np.stack([centres[n] for n in common])
    tgt = np.stack([np.asarray(priors[n], dtype=np.float64).reshape(3) for n in common])
    extent = float(np.linalg.norm(np.ptp(tgt, axis=0)))
    if extent <= 0:
        return None
    sim, inliers = estimate_similarity(src, tgt, max_error_fraction * extent, seed)
    rec.transform(sim)
    err = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1)
    inl = err[inliers] if inliers.any() else err
    return Alignment(
        method=method, new_from_old=sim,
        residual_rms=float(np.sqrt(np.mean(inl**2))), residual_median=float(np.median(inl)),
        residual_rms_all=float(np.sqrt(np.mean(err**2))),
        n_inliers=int(inliers.sum()), n_common=len(common),
    )


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector `up` to +z."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(up, z)
    c = float(up @ z)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def orbit_radius(centres: np.ndarray) -> float:
    """Mean horizontal distance of camera centres (z up) from their mean vertical axis."""
    xy = centres[:, :2] - centres[:, :2].mean(axis=0)
    return float(np.linalg.norm(xy, axis=1).mean())


def estimate_up(rec: pycolmap.Reconstruction) -> tuple[np.ndarray, str]:
    """Up direction in the model frame and which cue gave it.

    The mean direction from the scene to the cameras is biased wherever the orbit is uneven (a
    descending spiral spends more of a turn on one side at each altitude), so it only picks the
    sign. Level cameras facing many ways pin up down as the normal of their x axes; when the x
    axes are (anti)parallel (a survey flown on one heading), up is taken in the plane they leave
    free, along the mean viewing direction reversed (exact for nadir photos).
    """
    ims = [im for im in rec.images.values() if im.has_pose]
    centres = np.stack([np.asarray(im.projection_center()) for im in ims])
    pts = np.array([p.xyz for p in rec.points3D.values()]) if rec.num_points3D() else centres
    dirs = centres - np.median(pts, axis=0)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    coarse = dirs.mean(axis=0)
    coarse /= np.linalg.norm(coarse) + 1e-12
    rot = [np.asarray(im.cam_from_world().rotation.matrix()) for im in ims]
    x_axes = np.stack([r[0] for r in rot])
    evals, evecs = np.linalg.eigh(x_axes.T @ x_axes / len(ims))  # ascending; they sum to 1
    if evals[1] > 0.02:  # x axes spread over more than ~8 degrees of heading
        up, how = evecs[:, 0], "level cameras"
    else:
        plane = evecs[:, :2]
        view = -np.mean([r[2] for r in rot], axis=0)
        up, how = plane @ (plane.T @ view), "level cameras + viewing direction"
    up /= np.linalg.norm(up) + 1e-12
    return (up if up @ coarse >= 0 else -up), how


def align_by_orbit(rec: pycolmap.Reconstruction) -> Alignment:
    """Gravity-up frame from the orbit: z up, origin on the orbit axis at ground level, unit = orbit radius."""
    centres = np.stack(list(camera_centres(rec).values()))
    pts = np.array([p.xyz for p in rec.points3D.values()]) if rec.num_points3D() else centres
    up, how = estimate_up(rec)
    R = rotation_to_z(up)
    c_rot = centres @ R.T
    radius = orbit_radius(c_rot)
    if radius <= 1e-9:  # all cameras on the axis (e.g. a nadir stack): use their spread instead
        radius = float(np.linalg.norm(np.ptp(centres, axis=0))) or 1.0
    scale = 1.0 / radius
    p_rot = pts @ R.T
    origin = np.array([*c_rot[:, :2].mean(axis=0), np.percentile(p_rot[:, 2], 2)])
    sim = pycolmap.Sim3d(scale, pycolmap.Rotation3d(R), -scale * origin)
    rec.transform(sim)
    return Alignment(method="orbit", new_from_old=sim, unit="orbit radius",
                     extra={"up_in_model": up.tolist(), "up_from": how})
