"""Ground truth agrees with the images: cameras, footprints and the scene mesh tell the same story.

The checks re-implement projection and ray casting from the written files only (meta/*.json and
meta/scene.ply), so a convention slip in the generator cannot cancel itself out.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import shapely

from synthetic.camera import Camera
from synthetic.generate import build_world
from synthetic.render import Renderer

from .conftest import small_config


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode()
    nv = int(header.split("element vertex ")[1].split()[0])
    nf = int(header.split("element face ")[1].split()[0])
    vdt = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    fdt = np.dtype([("n", "u1"), ("v", "<i4", 3), ("object", "<i4")])
    v = np.frombuffer(data, vdt, nv, end)
    f = np.frombuffer(data, fdt, nf, end + nv * vdt.itemsize)
    assert np.all(f["n"] == 3)
    return v["xyz"], f["v"], f["object"]


def _scene(root: Path):
    xyz, faces, obj = _read_ply(root / "meta" / "scene.ply")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(xyz)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene, obj


def _project(cam: dict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K, P = np.asarray(cam["K"]), np.asarray(cam["cam_from_world"])
    Xc = X @ P[:, :3].T + P[:, 3]
    xy = Xc[:, :2] / Xc[:, 2:3] if cam["model"] == "PINHOLE" else Xc[:, :2]
    return xy @ K[:2, :2].T + K[:2, 2], Xc[:, 2]


def _rays(cam: dict, uv: np.ndarray) -> np.ndarray:
    """Rays through sub-pixel positions, built from K and cam_from_world alone."""
    K, P = np.asarray(cam["K"]), np.asarray(cam["cam_from_world"])
    R, t = P[:, :3], P[:, 3]
    xy = (uv - K[:2, 2]) / np.diag(K)[:2]
    if cam["model"] == "PINHOLE":
        d = np.concatenate([xy, np.ones((len(uv), 1))], 1) @ R  # R^T applied to row vectors
        o = np.broadcast_to(-R.T @ t, d.shape)
    else:
        o = (np.concatenate([xy, np.zeros((len(uv), 1))], 1) - t) @ R
        d = np.broadcast_to(R[2], o.shape)
    return np.concatenate([o, d], 1).astype(np.float32)


def _corners(b: dict) -> np.ndarray:
    """Footprint corners near the ground and at the eaves, 10 cm inside the walls (mitred inset), so
    the ray meets this building's own surface rather than grazing past its edge."""
    poly = shapely.Polygon(b["footprint"]).buffer(-0.1, join_style="mitre")
    fp = np.asarray(poly.exterior.coords)[:-1]
    top = min(b["eave_height"] - 0.1, b["height"] - 0.1)
    return np.concatenate([np.c_[fp, np.full(len(fp), 0.3)], np.c_[fp, np.full(len(fp), top)]])


def test_corners_land_where_the_depth_agrees(small_world: Path):
    """Project footprint corners with each image's camera; at that pixel the mesh depth equals the
    corner's depth unless something nearer hides it, and enough corners are seen unhidden."""
    scene, obj = _scene(small_world)
    buildings = json.loads((small_world / "meta" / "buildings.json").read_text())
    seen = checked = 0
    for bid, b in buildings.items():
        cams = json.loads((small_world / "meta" / "cameras" / f"{bid}.json").read_text())
        X = _corners(b)
        for rel, cam in cams.items():
            if "/gallery_" in rel or cam["view"] == "google":
                continue
            uv, z = _project(cam, X)
            inside = (z > 0) & np.all((uv >= 0) & (uv < [cam["width"], cam["height"]]), axis=1)
            if not inside.any():
                continue
            ans = scene.cast_rays(o3d.core.Tensor(_rays(cam, uv[inside])))
            t = ans["t_hit"].numpy()
            hit_obj = obj[np.minimum(ans["primitive_ids"].numpy(), len(obj) - 1)]
            depth = t  # PINHOLE rays have camera z = 1; ORTHO rays start on the camera plane
            zi = z[inside]
            tol = 0.02 * zi + 0.05 if cam["model"] == "PINHOLE" else np.full_like(zi, 0.5)
            agree = np.abs(depth - zi) < tol
            assert np.all(agree | (depth < zi)), f"{rel}: a corner is seen through"
            assert np.all(hit_obj[agree] == b["index"]), f"{rel}: depth agrees but another object is hit"
            seen += int(agree.sum())
            checked += int(inside.sum())
    assert checked > 100
    assert seen / checked > 0.4


def test_images_match_the_scene_mesh(small_world: Path):
    """The renderer's depth equals the written mesh's depth along the camera's rays, and pixels
    where the mesh has nothing are sky in the JPEG."""
    cfg = small_config()
    layout, mesh = build_world(cfg)
    renderer = Renderer(mesh, layout, cfg.seed, cfg.shadows)
    scene, _ = _scene(small_world)
    buildings = json.loads((small_world / "meta" / "buildings.json").read_text())
    sky_checked = 0
    for bid in list(buildings)[:3]:
        cams = json.loads((small_world / "meta" / "cameras" / f"{bid}.json").read_text())
        for rel, cam in list(cams.items())[::3]:
            w, h = cam["width"], cam["height"]
            u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            ans = scene.cast_rays(o3d.core.Tensor(_rays(cam, np.c_[u.ravel(), v.ravel()])))
            t = ans["t_hit"].numpy().reshape(h, w)
            frame = renderer.render(Camera.from_json(cam), _light(), depth=True)
            both = np.isfinite(t) & np.isfinite(frame.depth)
            assert np.mean(np.isfinite(t) == np.isfinite(frame.depth)) > 0.999, rel
            assert np.median(np.abs(t[both] - frame.depth[both]) / t[both]) < 1e-3, rel
            img = cv2.imread(str(small_world / rel)).astype(int)
            sky = ~np.isfinite(t)
            if sky.sum() > 50:
                b_, r_ = img[..., 0][sky], img[..., 2][sky]
                assert np.mean(b_ >= r_ - 12) > 0.9, f"{rel}: pixels without geometry are not sky"
                sky_checked += 1
    assert sky_checked >= 1


def _light():
    from synthetic.render import Light
    return Light(Light.sun_vector(120, 45), 0.5, 1.0, np.ones(3), 0.0, 0)


def test_satellite_tile_is_north_up_and_centred(small_world: Path):
    """The tile's look-at point (the building centre) is the tile centre; east is right and north is
    up to within the off-nadir tilt, which lies in the configured range; ground scale is 1 / gsd
    shrunk by at most cos(tilt) along the tilt."""
    buildings = json.loads((small_world / "meta" / "buildings.json").read_text())
    cfg = small_config()
    lo, hi = cfg.satellite_off_nadir_deg
    tilts = []
    for bid, b in buildings.items():
        cams = json.loads((small_world / "meta" / "cameras" / f"{bid}.json").read_text())
        sat = next(c for r, c in cams.items() if c["view"] == "satellite")
        gsd = 1 / sat["K"][0][0]
        assert abs(gsd - cfg.satellite_gsd) < 1e-9
        R = np.asarray(sat["cam_from_world"])[:, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0
        tilt = np.degrees(np.arccos(-R[2, 2]))        # angle between the view direction and straight down
        assert lo - 1e-6 <= tilt <= hi + 1e-6, tilt
        tilts.append(tilt)
        c = np.asarray(b["center"])
        uv, _ = _project(sat, np.array([c, c + [10, 0, 0], c + [0, 10, 0]]))
        assert np.allclose(uv[0], [sat["width"] / 2, sat["height"] / 2], atol=1e-6)
        east, north = (uv[1] - uv[0]) * gsd / 10, (uv[2] - uv[0]) * gsd / 10
        assert abs(east[1]) < 1e-9 and east[0] > 0                    # east is exactly along +u
        cos_t = np.cos(np.radians(tilt))
        assert cos_t - 1e-6 <= east[0] <= 1 + 1e-6
        assert north[1] < 0 and np.degrees(np.arctan2(abs(north[0]), -north[1])) <= tilt + 1e-6  # north up
        assert cos_t - 1e-6 <= np.hypot(*north) <= 1 + 1e-6
    assert max(tilts) > lo + 1.0, "off-nadir angles are drawn from the range, not fixed"


def test_nadir_tile_keeps_the_plain_convention():
    from synthetic.camera import ORTHO_HEIGHT, ortho

    cam = ortho(64, 0.5, np.array([10.0, -4.0]))
    assert np.allclose(cam.R, np.diag([1.0, -1.0, -1.0]))
    assert np.allclose(cam.center, [10.0, -4.0, ORTHO_HEIGHT])
    tilted = ortho(64, 0.5, np.array([10.0, -4.0]), off_nadir_deg=20.0, azimuth_deg=90.0, center_z=5.0)
    # standing east of the scene and looking down-west: a tall wall's east face is seen, the
    # top of a 20 m mast at the look-at point leans away from the camera (west, -u)
    uv, _ = tilted.project(np.array([[10.0, -4.0, 5.0], [10.0, -4.0, 25.0]]))
    assert np.allclose(uv[0], [32, 32])
    assert uv[1][0] < uv[0][0] and abs(uv[1][1] - uv[0][1]) < 1e-9
    assert abs(tilted.center[2] - ORTHO_HEIGHT) < 1e-6 and tilted.center[0] > 10.0