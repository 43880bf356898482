"""Drone images carry what a real drone writes: EXIF GPS near the true centre and the lens focal length."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reconstruction.focal import read_exif_focal
from reconstruction.gps import read_exif_gps, wgs84_to_enu
from synthetic.exif import enu_to_wgs84
from synthetic.generate import generate_building_drone

from .conftest import small_config


def _drone_cameras(world: Path) -> dict[Path, dict]:
    out = {}
    for f in sorted((world / "meta" / "cameras").glob("*.json")):
        for rel, cam in json.loads(f.read_text()).items():
            if cam["view"] == "drone":
                out[world / rel] = cam
    return out


def test_gps_and_focal_round_trip(small_world: Path):
    cfg = small_config()
    cams = _drone_cameras(small_world)
    assert cams
    err_h, err_v = [], []
    for path, cam in cams.items():
        P = np.asarray(cam["cam_from_world"], float)
        centre = -P[:, :3].T @ P[:, 3]
        lla = read_exif_gps(path)
        assert lla is not None, path
        enu = wgs84_to_enu(lla, np.asarray(cfg.geo_origin))[0]
        err_h += list(enu[:2] - centre[:2])
        err_v.append(enu[2] - centre[2])
        f = read_exif_focal(path, cam["width"], cam["height"])
        assert f is not None and abs(f[0] - cam["K"][0][0]) < 1e-3 * cam["K"][0][0], (path, f, cam["K"])
    # the noise is what the config says: a few metres horizontally, more vertically (loose bounds, few samples)
    sh, sv = cfg.drone_gps_noise_m
    assert 0.4 * sh < np.std(err_h) < 2.0 * sh and np.max(np.abs(err_h)) < 5 * sh, np.std(err_h)
    assert np.max(np.abs(err_v)) < 5 * sv and np.std(err_v) > 0.3 * sv, err_v


def test_geodetic_round_trip_is_exact():
    origin = [47.3763, 8.5477, 410.0]
    enu = np.array([[120.0, -35.5, 61.25]])
    back = wgs84_to_enu(enu_to_wgs84(enu, origin), np.asarray(origin))
    assert np.allclose(back, enu, atol=1e-3)


def test_switch_off_writes_no_exif(tmp_path: Path):
    out = generate_building_drone(small_config(drone_exif="none", drone_images=3, drone_groups=1), tmp_path / "d", 0,
                                  workers=1)
    images = sorted(out.glob("image-*.jpeg"))
    assert len(images) == 3
    for p in images:
        assert read_exif_gps(p) is None and read_exif_focal(p, 96, 96) is None
        assert b"Exif\x00\x00" not in p.read_bytes()[:64 * 1024]
