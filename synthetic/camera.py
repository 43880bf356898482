"""Cameras of the synthetic world (OpenCV convention, `cam_from_world`, local ENU metres).

PINHOLE: a world point X maps to camera coordinates Xc = R X + t (x right, y down, z forward) and
to pixel (u, v) = (fx Xc.x / Xc.z + cx, fy Xc.y / Xc.z + cy); pixel (i, j) covers [i, i+1) x [j, j+1),
its centre is (i + 0.5, j + 0.5) (COLMAP's convention).

ORTHO (satellite tiles): the same Xc = R X + t, but (u, v) = (fx Xc.x + cx, fy Xc.y + cy) with
fx = fy = 1 / gsd and (cx, cy) = (W / 2, H / 2): no division by depth. Nadir, R = diag(1, -1, -1)
(x east, y south, z down). Off-nadir (real satellite and aerial tiles are rarely straight down, so
tall buildings lean and show part of a facade), z is the tilted viewing direction, x is east made
perpendicular to it and y = z cross x: the tile stays north-up (east right, north up, to within the
tilt) and the look-at point projects to the image centre; Xc.z is the depth along the view direction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ORTHO_HEIGHT = 1000.0  # metres above the ground of the satellite "camera" centre


@dataclass
class Camera:
    model: str               # PINHOLE | ORTHO
    width: int
    height: int
    K: np.ndarray            # (3, 3)
    cam_from_world: np.ndarray  # (3, 4) [R | t]

    @property
    def R(self) -> np.ndarray:
        return self.cam_from_world[:, :3]

    @property
    def t(self) -> np.ndarray:
        return self.cam_from_world[:, 3]

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the world frame, -R^T t."""
        return -self.R.T @ self.t

    def rays(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(N, 6) float32 rays [origin, direction] through pixel centres, row-major, for the pixels
        start..stop (default all). For PINHOLE the direction has camera z = 1, so the hit distance
        is the z-depth; ORTHO rays start on the camera plane, so there too it is the depth."""
        if self.model not in ("PINHOLE", "ORTHO"):
            raise ValueError(f"unknown camera model {self.model!r}")
        grid = _pixel_grid(self.width, self.height, *(float(x) for x in self.K[[0, 1, 0, 1], [0, 1, 2, 2]]))
        grid = grid[start:stop]
        out = np.empty((len(grid), 6), np.float32)
        Rt = self.R.T
        if self.model == "PINHOLE":
            out[:, :3] = self.center
            out[:, 3:] = _rotate(grid, Rt)
        else:  # grid z is 1; for ORTHO the pixel's point sits on the camera plane z = 0
            out[:, :3] = _rotate(grid - [0.0, 0.0, 1.0] - self.t, Rt)
            out[:, 3:] = Rt[:, 2]
        return out

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels (N, 2) and depth (N,) (camera z)."""
        Xc = X @ self.R.T + self.t
        if self.model == "PINHOLE":
            uv = Xc[:, :2] / Xc[:, 2:3]
        else:
            uv = Xc[:, :2]
        uv = uv * [self.K[0, 0], self.K[1, 1]] + [self.K[0, 2], self.K[1, 2]]
        return uv, Xc[:, 2]

    def to_json(self, view: str) -> dict:
        return {"view": view, "model": self.model, "width": int(self.width), "height": int(self.height),
                "K": _r(self.K), "cam_from_world": _r(self.cam_from_world)}

    @classmethod
    def from_json(cls, d: dict) -> "Camera":
        return cls(d["model"], int(d["width"]), int(d["height"]), np.asarray(d["K"], float),
                   np.asarray(d["cam_from_world"], float))


@lru_cache(maxsize=16)
def _pixel_grid(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Camera-frame rays (z = 1) through the pixel centres, row-major; cached per intrinsics."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    g = np.stack([(u.ravel() - cx) / fx, (v.ravel() - cy) / fy, np.ones(u.size)], -1)
    g.setflags(write=False)
    return g


def _rotate(v: np.ndarray, M: np.ndarray) -> np.ndarray:
    """v @ M.T for (N, 3) rows, without BLAS: a 3 x 3 product is memory-bound, and BLAS threads
    woken for each of thousands of small products cost more than the product (4x on 2 busy cores)."""
    return np.einsum("nk,jk->nj", v, M)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross of two 3-vectors, the same products in the same order, without its array
    machinery (the street planner builds tens of thousands of cameras)."""
    a0, a1, a2 = (float(v) for v in a)
    b0, b1, b2 = (float(v) for v in b)
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _r(a: np.ndarray) -> list:
    # rounded so the JSON bytes do not depend on the last float bits
    return [[float(f"{x:.9g}") for x in row] for row in np.asarray(a, float)]


def pinhole(width: int, height: int, fov_deg: float, C: np.ndarray, forward: np.ndarray) -> Camera:
    """A level (no roll) pinhole camera at C looking along `forward`; fov is horizontal."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    z = forward / np.linalg.norm(forward)
    x = _cross(z, np.array([0.0, 0.0, 1.0]))
    if np.linalg.norm(x) < 1e-6:  # straight down: image x east
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = _cross(z, x)
    R = np.stack([x, y, z])
    return Camera("PINHOLE", width, height, K, np.concatenate([R, (-R @ C)[:, None]], 1))


def look_at(width: int, height: int, fov_deg: float, C: np.ndarray, target: np.ndarray) -> Camera:
    return pinhole(width, height, fov_deg, np.asarray(C, float), np.asarray(target, float) - C)


def ortho(size: int, gsd: float, center_xy: np.ndarray, off_nadir_deg: float = 0.0, azimuth_deg: float = 0.0,
          center_z: float = 0.0) -> Camera:
    """North-up orthographic tile of size x size pixels; the point (center_xy, center_z) projects to
    the tile centre. `off_nadir_deg` tilts the viewing direction away from straight down, the camera
    standing toward `azimuth_deg` (clockwise from north, like the sun) as seen from the scene."""
    K = np.array([[1 / gsd, 0, size / 2], [0, 1 / gsd, size / 2], [0, 0, 1.0]])
    tilt, az = math.radians(off_nadir_deg), math.radians(azimuth_deg)
    if abs(off_nadir_deg) < 1e-9:
        R = np.diag([1.0, -1.0, -1.0])
    else:
        # view direction: down, and away from the camera's side of the scene
        z = np.array([-math.sin(az) * math.sin(tilt), -math.cos(az) * math.sin(tilt), -math.cos(tilt)])
        x = np.array([1.0, 0.0, 0.0]) - z[0] * z
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
    target = np.array([center_xy[0], center_xy[1], center_z], float)
    # the centre sits on the view ray through the target, ORTHO_HEIGHT above the ground
    C = target - R[2] * (ORTHO_HEIGHT - center_z) / -R[2][2]
    return Camera("ORTHO", size, size, K, np.concatenate([R, (-R @ C)[:, None]], 1))
