"""One building of the tiny synthetic world, reconstructed as the `reconstruct` stage does, against its ground truth."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pycolmap

from reconstruction.config import ReconstructConfig
from reconstruction.meta import drone_meta
from reconstruction.scene import reconstruct_scene


def test_synthetic_building_against_ground_truth(tiny_world, tiny_config, tmp_path):
    buildings = json.loads((tiny_world / "meta" / "buildings.json").read_text())
    bid = sorted(b for b, r in buildings.items() if r["split"] == "train")[0]
    drone = tiny_world / "train" / "drone" / bid
    meta = drone_meta(tiny_world, bid, drone)
    assert len(meta.priors) == len(meta.intrinsics) == len(list(drone.glob("image-*.jpeg")))
    cfg = ReconstructConfig(**asdict(tiny_config.reconstruct))
    q = reconstruct_scene(drone, tmp_path, cfg, position_priors=meta.priors, intrinsics=meta.intrinsics,
                          ground_truth=meta.ground_truth)
    assert q["registered"] >= 0.95 * q["total"], q
    assert q["alignment"]["method"] == "priors" and q["known_intrinsics"]
    gt = q["ground_truth"]
    assert gt["camera_error_rel_median"] < 0.01 and gt["camera_error_rel_max"] < 0.02, gt
    assert gt["mesh_distance_rel_median"] < 0.02, gt
    assert all(q["points_per_scale"][k] > 200 for k in ("1", "2", "3")), q["points_per_scale"]
    # The model on disk is the aligned one: its camera centres sit on the true ones (metres).
    rec = pycolmap.Reconstruction(tmp_path / "sparse")
    err = [np.linalg.norm(im.projection_center() - meta.priors[im.name]) for im in rec.images.values()]
    assert np.median(err) < 0.01 * buildings[bid]["orbit_radius"]
