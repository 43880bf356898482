"""SfM on real image sets (../shared/data) and the failure paths of reconstruct_scene."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap
import pytest

from reconstruction.align import align_by_orbit
from reconstruction.config import ReconstructConfig
from reconstruction.scene import reconstruct_scene
from reconstruction.sfm import ReconstructionError


def read_herzjesu_camera(path: Path, downscale: float = 2.0) -> dict:
    """One Strecha ground-truth camera (3072 px originals) as K (for the downscaled image) and cam_from_world."""
    v = np.array(path.read_text().split(), dtype=np.float64)
    K = v[0:9].reshape(3, 3).copy()
    K[:2] /= downscale
    R_world_from_cam = v[12:21].reshape(3, 3)
    C = v[21:24]
    R = R_world_from_cam.T
    return {"K": K, "cam_from_world": np.hstack([R, (-R @ C)[:, None]]), "centre": C}


def test_herzjesu_known_intrinsics_priors_and_a_corrupt_image(shared_data_dir, tmp_path, caplog):
    root = shared_data_dir / "herzjesu-p8"
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((root / "images").glob("*.jpg")):
        shutil.copy(p, images / p.name)
    (images / "0008.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    gt = {p.name: read_herzjesu_camera(root / "gt_cameras" / f"{p.name}.camera") for p in (root / "images").glob("*.jpg")}
    cfg = ReconstructConfig(max_image_size=640)
    with caplog.at_level(logging.WARNING, logger="skylink"):
        q = reconstruct_scene(
            images, tmp_path / "out", cfg,
            position_priors={n: c["centre"] for n, c in gt.items()},
            intrinsics={n: c["K"] for n, c in gt.items()},
            ground_truth={"cameras": {n: {"cam_from_world": c["cam_from_world"]} for n, c in gt.items()}},
        )
    assert "0008.jpg" in caplog.text and "0008.jpg" in q["skipped"]
    assert q["total"] == 9 and q["registered"] == 8, q
    assert q["known_intrinsics"] and q["matcher"] == "exhaustive"  # 8 images: every pair
    g = q["ground_truth"]
    assert g["relative_rotation_error_deg_max"] < 1.0, g
    # Aligned to the true centres (metres): residual a few cm on a ~10 m scene.
    assert q["alignment"]["method"] == "priors" and q["alignment"]["residual_rms"] < 0.1, q["alignment"]
    rec = pycolmap.Reconstruction(tmp_path / "out" / "sparse")
    assert rec.num_reg_images() == 8
    centre = {im.name: im.projection_center() for im in rec.images.values()}
    assert max(np.linalg.norm(centre[n] - gt[n]["centre"]) for n in centre) < 0.15
    assert json.loads((tmp_path / "out" / "quality.json").read_text())["registered"] == 8
    for k in (1, 2, 3):
        assert len(o3d.io.read_point_cloud(str(tmp_path / "out" / f"scale{k}.ply")).points) > 100


def test_brighton_gps_alignment(shared_data_dir, tmp_path):
    cfg = ReconstructConfig(max_image_size=512)
    q = reconstruct_scene(shared_data_dir / "brighton-beach" / "images", tmp_path, cfg)
    assert q["registered"] == 18, q
    a = q["alignment"]
    assert a["method"] == "gps" and a["unit"] == "metre"
    # GPS noise is metres; the flight spans ~120 m.
    assert a["residual_rms"] < 3.0, a
    rec = pycolmap.Reconstruction(tmp_path / "sparse")
    cams = np.stack([im.projection_center() for im in rec.images.values()])
    pts = np.stack([p.xyz for p in rec.points3D.values()])
    # Gravity up: the drone flies tens of metres above the beach, nadir cameras look down (+z_cam = -z_world).
    assert np.median(cams[:, 2]) - np.median(pts[:, 2]) > 20
    down = np.stack([im.cam_from_world().rotation.matrix().T[:, 2] for im in rec.images.values()])
    assert np.all(down[:, 2] < -0.9)
    # Without GPS the flight itself must give the same up: the survey is flown at one altitude
    # (GPS heights within +-0.3 m over ~120 m), so camera heights stay flat after orbit alignment.
    rec.transform(pycolmap.Sim3d(0.2, pycolmap.Rotation3d(np.array([0.3, -1.1, 0.4])), np.array([1.0, 2.0, 3.0])))
    a = align_by_orbit(rec)
    cams = np.stack([im.projection_center() for im in rec.images.values()])
    assert a.method == "orbit" and np.std(cams[:, 2]) < 0.02, (a.extra, np.std(cams[:, 2]))
    assert np.median(cams[:, 2]) > np.median(np.stack([p.xyz for p in rec.points3D.values()])[:, 2])


def test_unreconstructable_scene_raises_with_reason(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for i in range(4):  # unrelated noise: features, but no geometry between images
        cv2.imwrite(str(tmp_path / f"image-{i + 1:02d}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    with pytest.raises(ReconstructionError, match="registered|no model"):
        reconstruct_scene(tmp_path, tmp_path / "out", ReconstructConfig(max_image_size=128))


def test_folder_without_decodable_images_raises(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"broken")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(ReconstructionError, match="decodable"):
        reconstruct_scene(tmp_path, tmp_path / "out", ReconstructConfig())
