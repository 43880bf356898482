"""The `render` stage: renders the reconstruct stage's ok buildings, caches per building, records failures."""
from __future__ import annotations

import json

import open3d as o3d
import pytest

from pipeline.cache import MANIFEST, atomic_write_json
from pipeline.config import Config
from pipeline.stage import run_stage
from pipeline.stages.render import STAGE
from reconstruction.config import RenderConfig
from tests.reconstruction.test_render import box_scene


@pytest.fixture()
def workdir(tmp_path):
    rec = tmp_path / "reconstruct"
    box_scene(rec / "0001", n=3000, seed=1)
    box_scene(rec / "0002", n=3000, seed=2)
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
    # Unchanged: the stage is skipped; a changed cloud re-renders only that building.
    assert run_stage(STAGE, cfg, workdir)["finished_at"] == m["finished_at"]
    pc = o3d.io.read_point_cloud(str(workdir / "reconstruct" / "0002" / "scale1.ply"))
    o3d.io.write_point_cloud(str(workdir / "reconstruct" / "0002" / "scale2.ply"), pc)
    manifest = json.loads((workdir / "reconstruct" / MANIFEST).read_text())
    atomic_write_json(workdir / "reconstruct" / MANIFEST, manifest | {"key": "k2"})
    m2 = run_stage(STAGE, cfg, workdir)
    assert m2["items"]["0002"]["status"] == "ok"
    assert m2["counts"]["cached"] == 1 and m2["counts"]["changed"] == 1
