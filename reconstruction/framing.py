"""Find the target building of a drone orbit in its reconstruction: the orbit axis and the structure around it.

The drone circles the building it was sent to (University-1652 and our synthetic world alike), so the
building stands on the orbit's vertical axis. The axis comes from the registered camera centres (a
least-squares circle through their ground-plane positions) or, when the orbit is too short an arc for
a circle, from where the cameras' optical axes converge. The building's extent comes from the
reconstructed points above ground near that axis. Nothing here reads ground truth.
Frame: z up (the reconstruct stage's aligned frame), any unit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("skylink")

MIN_CIRCLE_CAMERAS = 5
MIN_CIRCLE_ARC_DEG = 150.0  # a circle through a shorter arc has an unreliable centre


@dataclass
class Orbit:
    """Vertical axis of the drone orbit (x, y), its horizontal radius (0 when unknown) and how it was found."""

    axis: np.ndarray
    radius: float
    source: str  # circle | rays | prior | points
    rms: float = 0.0  # circle fit: rms of the centres' distance to the circle

    def to_json(self) -> dict:
        return {"axis": [round(float(v), 4) for v in self.axis], "radius": round(float(self.radius), 4),
                "source": self.source, "rms": round(float(self.rms), 4)}


@dataclass
class Structure:
    """The target building as reconstructed: its footprint hull (x, y), ground and top level."""

    footprint: np.ndarray  # [M,2] convex hull, counter-clockwise
    ground: float
    top: float
    points: int            # points that make up the structure

    def box_corners(self) -> np.ndarray:
        """The footprint hull extruded from ground to top: [2M,3] points that bound the building."""
        lo = np.c_[self.footprint, np.full(len(self.footprint), self.ground)]
        hi = np.c_[self.footprint, np.full(len(self.footprint), self.top)]
        return np.r_[lo, hi]

    def to_json(self) -> dict:
        c = self.footprint
        return {"ground": round(self.ground, 4), "top": round(self.top, 4), "points": self.points,
                "footprint_min": [round(float(v), 4) for v in c.min(0)],
                "footprint_max": [round(float(v), 4) for v in c.max(0)]}


def registered_cameras(scene_dir: Path) -> list[dict]:
    """Registered cameras of the scene's COLMAP model (`sparse/` or `sparse/0`): name, K, cam_from_world, size.

    An empty list when the scene has no model.
    """
    import pycolmap

    sparse = Path(scene_dir) / "sparse"
    if (sparse / "0" / "cameras.bin").exists() and not (sparse / "cameras.bin").exists():
        sparse = sparse / "0"
    if not (sparse / "cameras.bin").exists() and not (sparse / "cameras.txt").exists():
        return []
    rec = pycolmap.Reconstruction(str(sparse))
    cams = []
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        if not im.has_pose:
            continue
        cam = rec.cameras[im.camera_id]
        cams.append({"name": im.name, "K": np.asarray(cam.calibration_matrix()), "width": cam.width,
                     "height": cam.height, "cam_from_world": np.asarray(im.cam_from_world().matrix())})
    return cams


def centres_and_axes(cams: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Camera centres [N,3] and unit viewing directions [N,3] (optical axes) in world coordinates."""
    if not cams:
        return np.zeros((0, 3)), np.zeros((0, 3))
    T = np.stack([np.asarray(c["cam_from_world"], dtype=np.float64) for c in cams])
    R, t = T[:, :, :3], T[:, :, 3]
    centres = -np.einsum("nji,nj->ni", R, t)
    return centres, R[:, 2, :]  # the camera's +z row is its viewing direction in world


def fit_circle(xy: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, float, float]:
    """Least-squares circle through 2D points (Kasa's algebraic fit, refit without points off by > 3 MAD).

    Returns centre, radius and the rms distance of the kept points to the circle.
    """
    keep = np.ones(len(xy), bool)
    centre, radius = xy.mean(0), 0.0
    for _ in range(iterations):
        p = xy[keep]
        # x^2 + y^2 = 2 a x + 2 b y + c, linear in (a, b, c); r^2 = c + a^2 + b^2.
        A = np.c_[2 * p, np.ones(len(p))]
        sol, *_ = np.linalg.lstsq(A, (p ** 2).sum(1), rcond=None)
        centre = sol[:2]
        radius = float(np.sqrt(max(sol[2] + centre @ centre, 0.0)))
        res = np.abs(np.linalg.norm(xy - centre, axis=1) - radius)
        mad = float(np.median(res[keep])) * 1.4826 + 1e-9 * max(radius, 1.0)
        new = res <= max(3 * mad, 1e-6 * max(radius, 1.0))
        if new.sum() < 3 or (new == keep).all():
            break
        keep = new
    res = np.abs(np.linalg.norm(xy[keep] - centre, axis=1) - radius)
    return centre, radius, float(np.sqrt(np.mean(res ** 2)))


def largest_gap_deg(xy: np.ndarray, centre: np.ndarray) -> float:
    """Largest angular gap (degrees) between the points' bearings seen from `centre`."""
    az = np.sort(np.degrees(np.arctan2(*(xy - centre).T[::-1])))
    return float(np.max(np.diff(np.r_[az, az[0] + 360.0])))


def ray_convergence(centres: np.ndarray, axes: np.ndarray) -> np.ndarray | None:
    """The ground-plane point closest (least squares) to every camera's optical axis projected on the ground.

    None when fewer than two cameras look sideways enough or their axes are parallel.
    """
    d = axes[:, :2]
    n = np.linalg.norm(d, axis=1)
    ok = n > 0.1  # a camera looking straight down says nothing about where it looks
    if ok.sum() < 2:
        return None
    d = d[ok] / n[ok, None]
    P = np.eye(2)[None] - d[:, :, None] * d[:, None, :]  # projectors orthogonal to each line
    A, b = P.sum(0), np.einsum("nij,nj->i", P, centres[ok, :2])
    if np.linalg.cond(A) > 1e6:
        return None
    return np.linalg.solve(A, b)


def estimate_orbit(centres: np.ndarray, axes: np.ndarray, prior: np.ndarray | None = None) -> Orbit | None:
    """The orbit axis from camera centres (circle fit) or optical axes (their convergence), or the prior.

    A given `prior` (x, y) wins: the building's position is known. None without cameras to go by.
    """
    xy = centres[:, :2]
    radius = 0.0
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64).reshape(2)
        radius = float(np.median(np.linalg.norm(xy - prior, axis=1))) if len(xy) else 0.0
        return Orbit(prior, radius, "prior")
    if len(xy) >= MIN_CIRCLE_CAMERAS:
        centre, radius, rms = fit_circle(xy)
        if radius > 0 and rms < 0.25 * radius and largest_gap_deg(xy, centre) <= 360.0 - MIN_CIRCLE_ARC_DEG:
            return Orbit(centre, radius, "circle", rms)
    conv = ray_convergence(centres, axes) if len(xy) else None
    if conv is not None:
        return Orbit(conv, float(np.median(np.linalg.norm(xy - conv, axis=1))), "rays")
    return None


def in_view_share(xyz: np.ndarray, cams: list[dict]) -> np.ndarray:
    """Share of the cameras whose image holds each point (in front, inside width x height).

    The drone keeps its target building in every frame, so the building's points are in view of
    (nearly) all cameras, while the trees and neighbours around it drop out of some of them.
    """
    seen = np.zeros(len(xyz))
    for c in cams:
        T = np.asarray(c["cam_from_world"], dtype=np.float64)
        p = xyz @ T[:, :3].T + T[:, 3]
        z = p[:, 2]
        uv = (p @ np.asarray(c["K"], dtype=np.float64).T)[:, :2] / np.maximum(z, 1e-12)[:, None]
        seen += (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < c["width"]) & (uv[:, 1] >= 0) & (uv[:, 1] < c["height"])
    return seen / max(len(cams), 1)


def _hull(xy: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(np.ascontiguousarray(xy, dtype=np.float32)).reshape(-1, 2)
    return hull.astype(np.float64)


def structure_near_axis(
    xyz: np.ndarray, axis: np.ndarray, ground: float, search_radius: float, *,
    core_share: float = 0.5, min_height_share: float = 0.15, grid: int = 48, top_percentile: float = 99.5,
) -> Structure:
    """The connected structure standing on (or next to) the axis, from the points within `search_radius` of it.

    The points' highest level per cell of a ground grid is a coarse DSM. Its cells above `core_share`
    of the building's height (the tallest points within 0.4 search radii of the axis), closed and
    opened by a cell, make solid blobs: the one on the axis, else the biggest one nearest to it, is
    the building, with the lower cells (above `min_height_share`) along its rim. Trees and neighbours
    across open ground or touching it by a thin bridge are left out. The footprint is the convex hull
    of the structure's points, grown by half a cell.
    """
    axis = np.asarray(axis, dtype=np.float64).reshape(2)
    d = np.linalg.norm(xyz[:, :2] - axis, axis=1)
    near = xyz[d < search_radius]
    if len(near) < 10:
        raise ValueError(f"only {len(near)} points within {search_radius:.3g} of the orbit axis")
    central = near[np.linalg.norm(near[:, :2] - axis, axis=1) < 0.4 * search_radius]
    tall = float(np.percentile((central if len(central) >= 10 else near)[:, 2] - ground, 99.0))
    if tall <= 0:
        raise ValueError("no structure above ground near the orbit axis")
    elevated = near[near[:, 2] - ground > min_height_share * tall]
    if len(elevated) < 10:
        raise ValueError(f"only {len(elevated)} points above ground near the orbit axis")
    cell = 2.0 * search_radius / grid
    ij = np.clip(((elevated[:, :2] - axis + search_radius) / cell).astype(int), 0, grid - 1)
    dsm = np.zeros((grid, grid), np.float64)
    np.maximum.at(dsm, (ij[:, 1], ij[:, 0]), elevated[:, 2] - ground)
    # Sparse clouds leave holes between points: close them; then an opening cuts the thin bridges
    # to trees and neighbours that touch the building, which stays a solid blob.
    k3 = np.ones((3, 3), np.uint8)
    core = cv2.morphologyEx((dsm > core_share * tall).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    opened = cv2.morphologyEx(core, cv2.MORPH_OPEN, k3)
    core = opened if opened.any() else core
    n, labels = cv2.connectedComponents(core, connectivity=8)
    if n < 2:
        raise ValueError("no structure above half the building's height near the orbit axis")
    counts = np.bincount(labels[ij[:, 1], ij[:, 0]], minlength=n)
    pick = int(labels[grid // 2, grid // 2])
    if pick == 0 or counts[pick] < 0.02 * len(elevated):
        # Nothing on the axis itself (a courtyard, a gap in the cloud): the nearest substantial blob.
        cand = [k for k in range(1, n) if counts[k] >= 0.05 * counts[1:].sum()] or [int(np.argmax(counts[1:])) + 1]
        rows, cols = np.mgrid[0:grid, 0:grid]
        dist = {k: np.hypot(rows[labels == k] - grid // 2, cols[labels == k] - grid // 2).min() for k in cand}
        pick = min(cand, key=lambda k: (dist[k], -counts[k]))
    # The blob and the lower cells along its rim (walls' lower rows, eaves, a lower wing's edge).
    mask = cv2.dilate((labels == pick).astype(np.uint8), k3).astype(bool) & (dsm > 0)
    pts = elevated[mask[ij[:, 1], ij[:, 0]]]
    offsets = 0.5 * cell * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    hull = _hull((pts[:, None, :2] + offsets[None]).reshape(-1, 2))
    top = float(np.percentile(pts[:, 2], top_percentile))
    return Structure(hull, float(ground), max(top, ground + 1e-6), int(len(pts)))
