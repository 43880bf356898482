"""Inspection: point cloud + camera frustums from the COLMAP model, and headless screenshots."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from reconstruction.inspect import inspect, scene_geometries
from reconstruction.views import look_at
from tests.reconstruction.test_render import box_scene

N_CAMERAS = 6


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """The box scene with a COLMAP model of 6 cameras on an orbit, looking at the building."""
    import pycolmap

    d = box_scene(tmp_path_factory.mktemp("inspect") / "scene", n=4000)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model="PINHOLE", width=64, height=48,
                                                    params=[50.0, 50.0, 32.0, 24.0], camera_id=1))
    for i in range(N_CAMERAS):
        a = 2 * np.pi * i / N_CAMERAS
        T = look_at(np.array([40 * np.cos(a), 40 * np.sin(a), 30.0 - 3 * i]), np.array([0.0, 0.0, 8.0]))
        im = pycolmap.Image(name=f"image-{i * 9 + 1:02d}.jpeg", camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(T[:, :3]), T[:, 3]))
    (d / "sparse").mkdir()
    rec.write_binary(str(d / "sparse"))
    return d


def test_geometries_hold_the_points_and_one_frustum_per_camera(scene):
    import open3d as o3d

    geoms, info = scene_geometries(scene, scale=2)
    n_ply = len(o3d.io.read_point_cloud(str(scene / "scale2.ply")).points)
    assert info["points"] == n_ply == len(geoms[0].points) > 0
    assert info["cameras"] == N_CAMERAS == len(geoms) - 1
    assert info["cameras_in_scale"] == 2  # 6 images in 3 altitude groups
    # Each frustum's apex is its camera centre (40 m from the axis); scale-2 frustums are coloured.
    for ls, c in zip(geoms[1:], info["camera_centres"]):
        assert np.min(np.linalg.norm(np.asarray(ls.points) - c, axis=1)) < 1e-6
        assert np.hypot(c[0], c[1]) == pytest.approx(40.0)
    coloured = [not np.allclose(np.asarray(ls.colors)[0], 0.55) for ls in geoms[1:]]
    assert sum(coloured) == 2
    with pytest.raises(FileNotFoundError, match="scale7.ply"):
        scene_geometries(scene, scale=7)


def building_mask(img: np.ndarray) -> np.ndarray:
    """Pixels showing the box building: its red roof or its sand walls (BGR)."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    roof = (r > 150) & (g < 90) & (b < 90)
    walls = (r > 180) & (g > 170) & (b > 110) & (b < 200) & (r - b > 40)
    return roof | walls


def building_share(img: np.ndarray) -> float:
    return float(building_mask(img).mean())


def building_span(img: np.ndarray) -> float:
    """The larger share of the image's width or height that the building's pixels span (1st-99th percentile)."""
    rows, cols = np.nonzero(building_mask(img))
    if not len(rows):
        return 0.0
    h, w = img.shape[:2]
    return max(np.ptp(np.percentile(cols, [1, 99])) / w, np.ptp(np.percentile(rows, [1, 99])) / h)


def test_splat_screenshot_frames_the_building(scene, tmp_path):
    out = tmp_path / "shot.png"
    facts = inspect(scene, scale=1, screenshot=out, size=(320, 240), backend="splat")
    assert facts["backend"] == "splat" and facts["cameras"] == N_CAMERAS and facts["panels"] == ["points scale 1"]
    img = cv2.imread(str(out))
    assert img.shape == (240, 320, 3)
    # Framed on the building: it fills a good share of the picture, not a small cluster in the middle.
    assert building_share(img) > 0.15 and building_span(img) > 0.55


def test_frustums_and_sparse_panels(scene, tmp_path):
    out = tmp_path / "frustums.png"
    facts = inspect(scene, scale=1, screenshot=out, size=(320, 240), backend="splat", frustums=True, sparse=True,
                    mesh=True)
    assert facts["panels"] == ["points scale 1"]  # no sparse_scale1.ply nor mesh.ply: shown alone
    img = cv2.imread(str(out))
    # Pulled back to hold the cameras: the building is smaller, the red scale-1 frustums are drawn.
    assert 0.01 < building_share(img) and building_span(img) < 0.5
    red = (img[..., 2] > 150) & (img[..., 1] < 80) & (img[..., 0] < 80)
    assert red.sum() > 20  # roof points and the scale-1 frustums are red
    # A dense cloud beside its sparse one: two panels side by side.
    import shutil

    shutil.copy(scene / "scale1.ply", scene / "sparse_scale1.ply")
    try:
        facts = inspect(scene, scale=1, screenshot=out, size=(320, 240), backend="splat", sparse=True)
    finally:
        (scene / "sparse_scale1.ply").unlink()
    assert facts["panels"] == ["dense scale 1", "sparse scale 1"]
    img = cv2.imread(str(out))
    assert img.shape == (240, 320, 3)
    assert building_span(img[:, :160]) > 0.5 and building_span(img[:, 160:]) > 0.5


def test_open3d_offscreen_screenshot(scene, tmp_path):
    """Headless Filament needs Vulkan (libvulkan1 + mesa-vulkan-drivers); it aborts the process without it."""
    out = tmp_path / "o3d.png"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-m", "reconstruction.inspect", str(scene), "--screenshot", str(out),
                           "--size", "320", "240", "--backend", "open3d"], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 and "Vulkan" in proc.stderr + proc.stdout:
        pytest.skip("no Vulkan device for Open3D's OffscreenRenderer (install libvulkan1 mesa-vulkan-drivers)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = cv2.imread(str(out))
    assert img.shape == (240, 320, 3)
    drawn = (img < 250).any(-1)
    assert 0.01 < drawn.mean() < 0.8
