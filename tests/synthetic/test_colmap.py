"""COLMAP reconstructs a synthetic building's drone images, and agrees with the ground truth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from synthetic.camera import Camera
from synthetic.config import SynthConfig
from synthetic.generate import generate_building_drone


def reconstruct(images: Path, work: Path, K: np.ndarray) -> pycolmap.Reconstruction | None:
    db = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = ",".join(str(float(x)) for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader)
    pycolmap.match_exhaustive(db)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.ba_refine_focal_length = False
    opts.ba_refine_principal_point = False
    opts.ba_refine_extra_params = False
    recs = pycolmap.incremental_mapping(db, images, work / "sparse", options=opts)
    return max(recs.values(), key=lambda r: r.num_reg_images()) if recs else None


@pytest.mark.slow
def test_drone_images_reconstruct(tmp_path: Path):
    cfg = SynthConfig(seed=1, n_train=4, n_test=3, n_distractors=2, drone_images=54, drone_size=256)
    out = generate_building_drone(cfg, tmp_path / "drone", building_index=0, workers=1)
    cams = json.loads((out / "cameras.json").read_text())
    building = json.loads((out / "building.json").read_text())
    assert sorted(cams) == [f"image-{i:02d}.jpeg" for i in range(1, 55)]
    work = tmp_path / "sfm"
    work.mkdir()
    rec = reconstruct(out, work, np.asarray(cams["image-01.jpeg"]["K"]))
    assert rec is not None
    assert rec.num_reg_images() >= 0.95 * len(cams)
    names = sorted(im.name for im in rec.images.values())
    by_name = {im.name: im for im in rec.images.values()}
    src = np.array([by_name[n].projection_center() for n in names])
    tgt = np.array([Camera.from_json(cams[n]).center for n in names])
    sim = pycolmap.estimate_sim3d(src, tgt)
    assert sim is not None
    err = np.linalg.norm(np.array([sim * p for p in src]) - tgt, axis=1)
    assert err.max() < 0.01 * building["orbit_radius"], (err.max(), building["orbit_radius"])
