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


def nadir_camera(center: np.ndarray, radius: float, size: int, name: str = "view00",
                 eye_height: float | None = None) -> ViewCamera:
    """Orthographic north-up camera covering the square [center +- radius] in x and y.

    `eye_height` (above the centre) must clear the tallest point; by default 10 radii.
    """
    gsd = 2.0 * radius / size  # metres per pixel
    K = np.array([[1.0 / gsd, 0.0, size / 2.0], [0.0, 1.0 / gsd, size / 2.0], [0.0, 0.0, 1.0]])
    R = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # east, south, down
    # High enough that everything within a few radii of the centre lies in front of the camera.
    up = 10.0 * radius if eye_height is None else max(float(eye_height), 10.0 * radius)
    eye = np.asarray(center, dtype=np.float64) + np.array([0.0, 0.0, up])
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
    for kind, azimuth, elevation in ring_directions(n_views, oblique_elevation_deg, low_elevation_deg, azimuth0_deg):
        cams.append(orbit_camera(center, radius, azimuth, elevation, image_size, fov_deg, kind,
                                 f"view{len(cams):02d}", ortho))
    return cams


def ring_directions(n_views: int, oblique_elevation_deg: float, low_elevation_deg: float,
                    azimuth0_deg: float = -90.0) -> list[tuple[str, float, float]]:
    """(kind, azimuth, elevation) of the ring views after the nadir: ceil((n-1)/2) oblique, the rest low.

    The low ring is offset by half a step in azimuth; the first view looks from `azimuth0_deg`.
    """
    rest = n_views - 1
    n_oblique = (rest + 1) // 2
    out = []
    for ring, (count, elevation, kind) in enumerate(
            [(n_oblique, oblique_elevation_deg, "oblique"), (rest - n_oblique, low_elevation_deg, "low")]):
        out += [(kind, azimuth0_deg + 360.0 * (k + 0.5 * ring) / count, elevation) for k in range(count)]
    return out


def framed_camera(
    target: np.ndarray, corners: np.ndarray, azimuth_deg: float, elevation_deg: float, size: int,
    fov_deg: float, kind: str, name: str, margin: float = 1.1, orthographic: bool = False,
) -> ViewCamera:
    """Camera at a bearing from `target`, looking at it, as close as it can be with every corner in view.

    `corners` [N,3] bound the object (e.g. its footprint extruded from ground to top); the closest
    distance at which all of them project inside the image shrunk by `margin` is closed-form per
    corner, then the principal point moves to centre the corners' projection and the camera comes
    closer while they still fit. Orthographic views take the scale that fits them instead.
    """
    target = np.asarray(target, dtype=np.float64).reshape(3)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    R = look_at(target + direction, target)[:, :3]
    q = (np.asarray(corners, dtype=np.float64) - target) @ R.T  # camera axes, before the distance is known
    spread = np.maximum(np.abs(q[:, 0]), np.abs(q[:, 1]))
    if orthographic:
        half = max(float(spread.max()) * margin, 1e-6)
        distance = float(max(-q[:, 2].min(), 0.0)) + 2.0 * half  # in front of every corner
        K = np.array([[size / (2 * half), 0.0, size / 2.0], [0.0, size / (2 * half), size / 2.0], [0.0, 0.0, 1.0]])
        model = "ORTHO"
    else:
        t = math.tan(math.radians(fov_deg) / 2.0) / margin
        # Centred on the target, a corner at camera (x, y, z + d) is inside when max(|x|, |y|) <= t (z + d).
        near = float((-q[:, 2]).max()) + 1e-3 * max(float(spread.max()), 1e-6)
        distance = float(max((spread / t - q[:, 2]).max(), near))
        # Perspective makes the near side look bigger: centre the image on the corners' projected box
        # (principal point off centre) and come closer, as long as that box still fits.
        def box(d: float) -> tuple[np.ndarray, np.ndarray]:
            uv = q[:, :2] / (q[:, 2:3] + d)
            return uv.min(0), uv.max(0)

        lo, hi = near, distance
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            a, b = box(mid)
            lo, hi = (lo, mid) if (b - a).max() <= 2 * t else (mid, hi)
        distance = hi
        a, b = box(distance)
        f = (size / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        c = size / 2.0 - f * 0.5 * (a + b)  # the box's centre lands on the image centre
        K = np.array([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]])
        model = "PINHOLE"
    eye = target + distance * direction
    return ViewCamera(name, kind, model, size, size, K, np.concatenate([R, (-R @ eye)[:, None]], 1))


def framed_view_set(
    target, corners: np.ndarray, n_views: int = 10, *, image_size: int = 128, fov_deg: float = 60.0,
    oblique_elevation_deg: float = 45.0, low_elevation_deg: float = 0.0, projection: str = "perspective",
    margin: float = 1.1, azimuth0_deg: float = -90.0,
) -> list[ViewCamera]:
    """The fixed views of one object, each framed tightly on it: view00 nadir, an oblique ring, a low ring.

    Same layout as `view_set`, but every view fits the object's `corners` (inside the image shrunk
    by `margin`) instead of a bounding sphere, so the object fills most of each frame. The nadir
    covers the square around `target` that holds every corner; with a 0 degree low ring the low
    views look horizontally at the target's height (put it at the building's mid-height).
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if projection not in ("perspective", "orthographic"):
        raise ValueError(f"projection must be perspective or orthographic, got {projection!r}")
    target = np.asarray(target, dtype=np.float64).reshape(3)
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 3)
    half = float(np.abs(corners[:, :2] - target[:2]).max()) * margin
    if not math.isfinite(half) or half <= 0:
        raise ValueError(f"the corners must span a positive extent around the target, got {half}")
    above = float(corners[:, 2].max() - target[2])
    cams = [nadir_camera(target, half, image_size, eye_height=2.0 * max(above, half))]
    for kind, azimuth, elevation in ring_directions(n_views, oblique_elevation_deg, low_elevation_deg, azimuth0_deg):
        cams.append(framed_camera(target, corners, azimuth, elevation, image_size, fov_deg, kind,
                                  f"view{len(cams):02d}", margin, projection == "orthographic"))
    return cams
