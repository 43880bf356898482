"""The `render` stage: renders the reconstruct stage's ok buildings, caches per building, records failures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from pipeline.cache import MANIFEST, atomic_write_json
from pipeline.config import Config
from pipeline.stage import run_stage
from pipeline.stages.render import STAGE
from reconstruction.config import RenderConfig
from tests.reconstruction.test_render import BOX, GROUND_Z, add_orbit_model, box_scene, box_triangles


def write_truth(tree: Path, building: str, scene: Path, index: int = 0) -> None:
    """The synthetic world's ground truth of the box building: tagged mesh, true cameras, buildings.json."""
    import pycolmap

    tris = box_triangles()
    ground = np.array([[[-40, -40, GROUND_Z], [40, -40, GROUND_Z], [40, 40, GROUND_Z]],
                       [[-40, -40, GROUND_Z], [40, 40, GROUND_Z], [-40, 40, GROUND_Z]]], np.float64)
    allt = np.r_[tris, ground]
    vert = np.zeros(len(allt) * 3, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vert["xyz"] = allt.reshape(-1, 3)
    face = np.zeros(len(allt), dtype=[("n", "u1"), ("v", "<i4", (3,)), ("object", "<i4")])
    face["n"], face["v"] = 3, np.arange(len(allt) * 3).reshape(-1, 3)
    face["object"] = np.r_[np.full(len(tris), index), np.full(len(ground), -1)]
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vert)}\nproperty float x\nproperty float y\n"
              f"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face {len(face)}\n"
              "property list uchar int vertex_indices\nproperty int object\nend_header\n")
    (tree / "meta" / "cameras").mkdir(parents=True, exist_ok=True)
    (tree / "meta" / "scene.ply").write_bytes(header.encode() + vert.tobytes() + face.tobytes())
    rec = pycolmap.Reconstruction(str(scene / "sparse"))
    cams = {f"train/drone/{building}/{im.name}": {"view": "drone", "model": "PINHOLE", "K": np.eye(3).tolist(),
                                                   "cam_from_world": np.asarray(im.cam_from_world().matrix()).tolist()}
            for im in rec.images.values()}
    (tree / "meta" / "cameras" / f"{building}.json").write_text(json.dumps(cams))
    sx, sy, h = BOX
    (tree / "meta" / "buildings.json").write_text(json.dumps({building: {
        "index": index, "height": h, "footprint": [[-sx / 2, -sy / 2], [sx / 2, -sy / 2], [sx / 2, sy / 2], [-sx / 2, sy / 2]]}}))


@pytest.fixture()
def workdir(tmp_path):
    rec = tmp_path / "reconstruct"
    add_orbit_model(box_scene(rec / "0001", n=3000, seed=1))
    box_scene(rec / "0002", n=3000, seed=2)
    write_truth(tmp_path / "data" / "tree", "0001", rec / "0001")
    atomic_write_json(tmp_path / "data" / MANIFEST, {"stage": "data", "key": "d1", "finished": True, "items": {}})
    (rec / "0002" / "scale2.ply").write_text("not a point cloud\n")
    (rec / "0003").mkdir()  # a failed reconstruction: not rendered
    atomic_write_json(rec / MANIFEST, {"stage": "reconstruct", "key": "k1", "finished": True, "items": {
        "0001": {"status": "ok"}, "0002": {"status": "ok"}, "0003": {"status": "failed", "reason": "too few images"}}})
    return tmp_path


def test_render_stage_items_cache_and_failures(workdir):
    cfg = Config()
    cfg.render = RenderConfig(n_views=3, image_size=32, device="cpu")
    m = run_stage(STAGE, cfg, workdir)
    items = m["items"]
    assert sorted(items) == ["0001", "0002"]
    assert items["0001"]["status"] == "ok" and items["0002"]["status"] == "failed"
    assert "scale2.ply: not a PLY file" in items["0002"]["reason"]
    out = workdir / "render" / "0001"
    assert (out / "scale3" / "view02_height.npy").is_file() and (out / "preview.png").is_file()
    assert m["summary"]["ok"] == 1 and m["summary"]["mean_coverage_scale1"] > 0.2
    # Measured after rendering: the share of the true silhouette each view covers, framed on the orbit axis.
    assert items["0001"]["axis_source"] == "circle"
    q = json.loads((out / "quality.json").read_text())["silhouette_coverage"]
    assert sorted(q["scales"]) == ["1", "2", "3"] and len(q["scales"]["1"]["views"]) == 3
    assert q["in_frame_min"] == 1.0 and q["scales"]["1"]["min"] > 0.8
    assert m["summary"]["silhouette_coverage_median_scale1"] == q["scales"]["1"]["median"]
    # Unchanged: the stage is skipped; a changed cloud re-renders only that building.
    assert run_stage(STAGE, cfg, workdir)["finished_at"] == m["finished_at"]
    pc = o3d.io.read_point_cloud(str(workdir / "reconstruct" / "0002" / "scale1.ply"))
    o3d.io.write_point_cloud(str(workdir / "reconstruct" / "0002" / "scale2.ply"), pc)
    manifest = json.loads((workdir / "reconstruct" / MANIFEST).read_text())
    atomic_write_json(workdir / "reconstruct" / MANIFEST, manifest | {"key": "k2"})
    m2 = run_stage(STAGE, cfg, workdir)
    assert m2["items"]["0002"]["status"] == "ok"
    assert m2["counts"]["cached"] == 1 and m2["counts"]["changed"] == 1
