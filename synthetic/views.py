"""Where the cameras of each view stand: satellite tile, drone spiral, street and google shots.

Every sampler draws from its own generator keyed by (seed, view, building, image), so a camera
never depends on what was sampled before it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from .camera import Camera, look_at, ortho, pinhole
from .config import SynthConfig
from .layout import Building, Layout, rng_for
from .render import Light, Renderer

VIS_SIZE = 48  # pixels of the quick object-id render that checks what a street camera sees


@dataclass
class Shot:
    """One image to render: where it goes, its camera, its light, and what it shows."""
    paths: list[str]        # relative to the dataset root; several when test splits share an image
    view: str               # drone | satellite | street | google
    camera: Camera
    light: Light
    building: str           # id of the folder it is stored under
    shows: str              # id of the building it actually shows
    exif: bytes = b""       # APP1 block written into the JPEG (drone GPS and focal), b"": none


def _u(rng: np.random.Generator, r) -> float:
    return float(rng.uniform(r[0], r[1]))


def random_light(cfg: SynthConfig, rng: np.random.Generator, seed: int) -> Light:
    wb = 1 + rng.uniform(-cfg.white_balance, cfg.white_balance, 3)
    return Light(Light.sun_vector(_u(rng, cfg.sun_azimuth_deg), _u(rng, cfg.sun_elevation_deg)),
                 _u(rng, cfg.ambient), _u(rng, cfg.exposure), wb, cfg.sensor_noise, seed)


def satellite_camera(cfg: SynthConfig, b: Building) -> Camera:
    """The building's tile: its centre (mid-height) at the tile centre, seen from an off-nadir angle
    in `satellite_off_nadir_deg` toward a random azimuth (its own generator: the other views' bytes
    do not depend on it)."""
    rng = rng_for(cfg.seed, "sat-view", b.index)
    tilt, az = _u(rng, cfg.satellite_off_nadir_deg), float(rng.uniform(0.0, 360.0))
    return ortho(cfg.satellite_size, cfg.satellite_gsd, b.center[:2], tilt, az, float(b.center[2]))


class Clearance:
    """Is a camera position free of buildings, tree crowns and trunks, and cars?"""

    def __init__(self, layout: Layout) -> None:
        self.buildings = layout.buildings
        self.tree = np.array([[t.x, t.y, t.crown_center_z, t.crown_radius, t.crown_height]
                              for t in layout.trees]).reshape(-1, 5)
        self.cars = np.array([[c.x, c.y] for c in layout.cars]).reshape(-1, 2)
        self.bounds = np.array([b.footprint.bounds for b in layout.buildings]).reshape(-1, 4)
        self.tops = np.array([b.top for b in layout.buildings])

    def ok(self, C: np.ndarray, margin: float = 1.0) -> bool:
        # exact distances only to the buildings whose box grown by the margin holds the point: the
        # same answer as testing all of them, without a loop over the whole campus per candidate
        lo, hi = self.bounds[:, :2] - margin, self.bounds[:, 2:] + margin
        near = np.nonzero(np.all((lo <= C[:2]) & (C[:2] <= hi), axis=1) & (C[2] < self.tops + margin + 1))[0]
        if len(near):
            p = shapely.Point(C[0], C[1])
            if any(self.buildings[i].footprint.distance(p) < margin for i in near):
                return False
        if len(self.tree):
            dx, dy = self.tree[:, 0] - C[0], self.tree[:, 1] - C[1]
            dz = self.tree[:, 2] - C[2]
            e = (dx / (self.tree[:, 3] + margin)) ** 2 + (dy / (self.tree[:, 3] + margin)) ** 2 \
                + (dz / (self.tree[:, 4] + margin)) ** 2
            trunk = (np.hypot(dx, dy) < 0.5 + margin * 0.5) & (C[2] < self.tree[:, 2])
            if np.any(e < 1) or np.any(trunk):
                return False
        if len(self.cars) and C[2] < 2.5 and np.any(np.hypot(*(self.cars - C[:2]).T) < 3.0):
            return False
        return True


def drone_cameras(cfg: SynthConfig, b: Building, clear: Clearance) -> list[Camera]:
    """A descending spiral around the building centre, one turn per altitude group."""
    n, groups = cfg.drone_images, cfg.drone_groups
    per = max(1, n // groups)
    rng = rng_for(cfg.seed, "drone", b.index)
    R = b.orbit_radius(cfg)
    c = b.center
    az0 = rng.uniform(0, 2 * math.pi)
    sense = 1.0 if rng.random() < 0.5 else -1.0
    cams = []
    for i in range(n):
        s = i / (n - 1) if n > 1 else 0.0
        el = math.radians(cfg.drone_elevation_deg[0] + s * (cfg.drone_elevation_deg[1] - cfg.drone_elevation_deg[0]))
        r = R * (cfg.drone_radius_scale[0] + s * (cfg.drone_radius_scale[1] - cfg.drone_radius_scale[0]))
        az = az0 + sense * 2 * math.pi * i / per
        C = c + np.array([r * math.cos(az), r * math.sin(az), r * math.tan(el)])
        while not clear.ok(C, margin=3.0):  # never inside a neighbouring tower or a tree
            C[2] += 2.0
        target = c + rng.normal(0, 0.01 * R, 3)
        cams.append(look_at(cfg.drone_size, cfg.drone_size, cfg.drone_fov_deg, C, target))
    return cams


def drone_lights(cfg: SynthConfig, b: Building) -> list[Light]:
    """One flight, one sun: small jitter of the sun and of the auto-exposure per image."""
    rng = rng_for(cfg.seed, "drone-light", b.index)
    az, el = _u(rng, cfg.sun_azimuth_deg), _u(rng, cfg.sun_elevation_deg)
    amb, exp = _u(rng, cfg.ambient), _u(rng, cfg.exposure)
    wb = 1 + rng.uniform(-cfg.white_balance, cfg.white_balance, 3)
    j = cfg.drone_sun_jitter_deg
    out = []
    for i in range(cfg.drone_images):
        irng = rng_for(cfg.seed, "drone-light", b.index, i)
        sun = Light.sun_vector(az + irng.uniform(-j, j), el + irng.uniform(-j, j) / 2)
        out.append(Light(sun, amb, exp * irng.uniform(0.96, 1.04), wb, cfg.sensor_noise,
                         int(rng_for(cfg.seed, "noise", b.index, i).integers(2 ** 31))))
    return out


def _walk_points(layout: Layout, step: float = 1.5) -> np.ndarray:
    pts = []
    for line in layout.walk_lines:
        seg = np.diff(line, axis=0)
        for p, d in zip(line[:-1], seg):
            k = max(1, int(np.hypot(*d) / step))
            pts.append(p + d * (np.arange(k)[:, None] / k))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


class GroundShots:
    """Street-level cameras looking at a chosen building from the pavements."""

    def __init__(self, layout: Layout, renderer: Renderer) -> None:
        self.layout = layout
        self.renderer = renderer
        self.clear = Clearance(layout)
        self.walk = _walk_points(layout)
        self._walk_geoms = shapely.points(self.walk)

    def sample(self, rng: np.random.Generator, b: Building, size: int, fov_range, height_range,
               dist_range: tuple[float, float], min_share: float, avoid: int | None = None) -> Camera:
        """A camera whose view holds at least `min_share` of building b (best of a few tries),
        heading roughly toward it but not always centred; `avoid` must be nearly invisible."""
        # exact distances only for the walk points in the building's box grown by the far limit (+1 m
        # of slack): the same candidates as from all points, at a cost that does not grow with the campus
        x0, y0, x1, y1 = b.footprint.bounds
        g = dist_range[1] + 1.0
        box = np.nonzero((self.walk[:, 0] >= x0 - g) & (self.walk[:, 0] <= x1 + g)
                         & (self.walk[:, 1] >= y0 - g) & (self.walk[:, 1] <= y1 + g))[0]
        d = shapely.distance(self._walk_geoms[box], b.footprint)
        cand = box[(d >= dist_range[0]) & (d <= dist_range[1])]
        if len(cand) == 0:
            d = shapely.distance(self._walk_geoms, b.footprint)
            cand = np.argsort(np.abs(d - dist_range[0]))[:50]
        best, best_score = None, -1.0
        ring = b.footprint.exterior
        for _try in range(40):
            xy = self.walk[cand[rng.integers(len(cand))]] + rng.normal(0, 0.6, 2)
            C = np.array([xy[0], xy[1], _u(rng, height_range)])
            if not self.clear.ok(C, margin=0.6):
                continue
            near = ring.project(shapely.Point(xy))
            along = (near + rng.normal(0, 0.25 * ring.length / 4)) % ring.length
            tp = ring.interpolate(along)
            tz = rng.uniform(0.25, 0.7) * min(b.height, 25.0)
            fov = _u(rng, fov_range)
            fwd = np.array([tp.x, tp.y, tz]) - C
            yaw = math.atan2(fwd[1], fwd[0]) + rng.uniform(-0.3, 0.3) * math.radians(fov)
            pitch = math.atan2(fwd[2], math.hypot(fwd[0], fwd[1]))
            pitch = float(np.clip(pitch + rng.normal(0, math.radians(3)), math.radians(-6), math.radians(22)))
            f = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
            cam = pinhole(size, size, fov, C, f)
            small = pinhole(VIS_SIZE, VIS_SIZE, fov, C, f)
            obj = self.renderer.objects(small)
            share = float(np.mean(obj == b.index))
            if avoid is not None and np.mean(obj == avoid) > 0.03:
                continue
            if share >= min_share:
                return cam
            if share > best_score:
                best, best_score = cam, share
        if best is None:  # nowhere clear: fall back to a raised camera at the nearest candidate
            xy = self.walk[cand[0]]
            C = np.array([xy[0], xy[1], 3.0])
            best = look_at(size, size, float(np.mean(fov_range)), C, b.center)
        return best
