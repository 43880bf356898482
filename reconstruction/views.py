"""The fixed set of views a building is rendered from (PointCLIP-style): nadir, an oblique ring, low facade views.

Frame: metric, gravity-up (z up, x east, y north). Cameras follow pycolmap / OpenCV: `cam_from_world`
= [R | t] maps world to camera coordinates, x right, y down, z forward. The nadir view is
orthographic and north-up (image x = east, image y = south), so it doubles as the DSM grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ViewCamera:
    """One render camera. For ORTHO, K maps camera x, y (metres) to pixels: u = K[0,0]*x + K[0,2]."""

    name: str
    kind: str               # nadir | oblique | low
    model: str              # PINHOLE | ORTHO
    width: int
    height: int
    K: np.ndarray           # 3x3
    cam_from_world: np.ndarray  # 3x4

    @property
    def orthographic(self) -> bool:
        return self.model == "ORTHO"

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (for ORTHO: a point on the image plane's axis)."""
        R, t = self.cam_from_world[:, :3], self.cam_from_world[:, 3]
        return -R.T @ t

    def to_json(self) -> dict:
        return {"view": self.kind, "model": self.model, "width": self.width, "height": self.height,
                "K": self.K.tolist(), "cam_from_world": self.cam_from_world.tolist()}

    @classmethod
    def from_json(cls, name: str, d: dict) -> "ViewCamera":
        return cls(name, d["view"], d["model"], int(d["width"]), int(d["height"]),
                   np.asarray(d["K"], dtype=np.float64), np.asarray(d["cam_from_world"], dtype=np.float64))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """cam_from_world (3x4) of an OpenCV camera at `eye` looking at `target`, image up along world `up`."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any horizontal right vector will do
        right = np.array([1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return np.concatenate([R, (-R @ eye)[:, None]], axis=1)


def nadir_camera(center: np.ndarray, radius: float, size: int, name: str = "view00") -> ViewCamera:
    """Orthographic north-up camera covering the square [center +- radius] in x and y."""
    gsd = 2.0 * radius / size  # metres per pixel
    K = np.array([[1.0 / gsd, 0.0, size / 2.0], [0.0, 1.0 / gsd, size / 2.0], [0.0, 0.0, 1.0]])
    R = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # east, south, down
    # High enough that everything within a few radii of the centre lies in front of the camera.
    eye = np.asarray(center, dtype=np.float64) + np.array([0.0, 0.0, 10.0 * radius])
    return ViewCamera(name, "nadir", "ORTHO", size, size, K, np.concatenate([R, (-R @ eye)[:, None]], 1))


def orbit_camera(
    center: np.ndarray, radius: float, azimuth_deg: float, elevation_deg: float, size: int,
    fov_deg: float, kind: str, name: str, orthographic: bool = False,
) -> ViewCamera:
    """Camera on a sphere around `center` looking at it, framing a sphere of `radius`.

    Azimuth is measured from east towards north; the camera sits at that bearing from the centre.
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    half_fov = math.radians(fov_deg) / 2.0
    distance = radius / math.sin(half_fov)  # the bounding sphere just fits the field of view
    center = np.asarray(center, dtype=np.float64)
    eye = center + distance * direction
    if orthographic:
        scale = size / (2.0 * radius)
        K = np.array([[scale, 0.0, size / 2.0], [0.0, scale, size / 2.0], [0.0, 0.0, 1.0]])
        model = "ORTHO"
    else:
        f = (size / 2.0) / math.tan(half_fov)
        K = np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])
        model = "PINHOLE"
    return ViewCamera(name, kind, model, size, size, K, look_at(eye, center))


def view_set(
    center, radius: float, n_views: int = 10, *, image_size: int = 128, fov_deg: float = 60.0,
    oblique_elevation_deg: float = 45.0, low_elevation_deg: float = 10.0,
    projection: str = "perspective", azimuth0_deg: float = -90.0,
) -> list[ViewCamera]:
    """The fixed views of a scene within `radius` of `center`: view00 nadir, then an oblique ring, then a low ring.

    With n views: 1 nadir, ceil((n-1)/2) oblique at `oblique_elevation_deg`, the rest low at
    `low_elevation_deg` (towards the facades), the low ring offset by half a step in azimuth.
    The first ring view looks from `azimuth0_deg` (default: from the south, looking north).
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if radius <= 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a positive number, got {radius}")
    if projection not in ("perspective", "orthographic"):
        raise ValueError(f"projection must be perspective or orthographic, got {projection!r}")
    center = np.asarray(center, dtype=np.float64).reshape(3)
    ortho = projection == "orthographic"
    cams = [nadir_camera(center, radius, image_size)]
    rest = n_views - 1
    n_oblique = (rest + 1) // 2
    n_low = rest - n_oblique
    for ring, (count, elevation, kind) in enumerate(
            [(n_oblique, oblique_elevation_deg, "oblique"), (n_low, low_elevation_deg, "low")]):
        for k in range(count):
            azimuth = azimuth0_deg + 360.0 * (k + 0.5 * ring) / count
            cams.append(orbit_camera(center, radius, azimuth, elevation, image_size, fov_deg, kind,
                                     f"view{len(cams):02d}", ortho))
    return cams
