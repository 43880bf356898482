"""Diagnostic: render an oracle "dense" cloud with the pipeline's own framing, to separate framing from density.

    .venv/bin/python bench/render_oracle.py WORKDIR OUT BUILDING [BUILDING ...]

For each building: points sampled on the ground-truth scene mesh near its orbit (all objects, mesh
colours), moved into the reconstruction's frame, written as OUT/reconstruct/<id>/scale{1,2,3}.ply beside a
copy of the real registered model (so the orbit axis comes from the real cameras), rendered with the
default RenderConfig (image_size 96) into OUT/render/<id>, then measured (silhouette coverage). Reads the
ground truth to build its input: a measuring aid, never part of the pipeline.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import open3d as o3d

from reconstruction.config import RenderConfig
from reconstruction.framing import centres_and_axes, registered_cameras
from reconstruction.meta import drone_meta
from reconstruction.quality import read_scene_mesh, surface_samples
from reconstruction.render import render_building
from reconstruction.silhouette import silhouette_coverage, to_reconstruction_frame


def main(work: Path, dst: Path, buildings: list[str], n_points: int = 300000) -> None:
    tree = work / "data" / "tree"
    tris, _ = read_scene_mesh(tree / "meta" / "scene.ply")
    vcol = np.asarray(o3d.io.read_triangle_mesh(str(tree / "meta" / "scene.ply")).vertex_colors)
    (dst / "data").parent.mkdir(parents=True, exist_ok=True)
    if not (dst / "data").exists():
        (dst / "data").symlink_to((work / "data").resolve())
    for b in buildings:
        gt = drone_meta(tree, b, tree / "train" / "drone" / b).ground_truth
        rec = {c["name"]: c for c in registered_cameras(work / "reconstruct" / b)}
        names = sorted(n for n in rec if n in gt["cameras"])
        rc, _ = centres_and_axes([rec[n] for n in names])
        tc, _ = centres_and_axes([{"cam_from_world": gt["cameras"][n]["cam_from_world"]} for n in names])
        centre = tc[:, :2].mean(0)
        radius = np.linalg.norm(tc[:, :2] - centre, axis=1).mean()
        sel = np.nonzero(np.linalg.norm(tris.mean(1)[:, :2] - centre, axis=1) < 1.2 * radius)[0]
        pts, face = surface_samples(tris[sel], n_points, seed=0)
        out = dst / "reconstruct" / b
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        shutil.copytree(work / "reconstruct" / b / "sparse", out / "sparse")
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(to_reconstruction_frame(pts, rc, tc)))
        pc.colors = o3d.utility.Vector3dVector(vcol[3 * sel[face]])
        for k in (1, 2, 3):
            o3d.io.write_point_cloud(str(out / f"scale{k}.ply"), pc)
        render_dir = dst / "render" / b
        render_building(out, render_dir, RenderConfig(n_views=10, image_size=96))
        q = silhouette_coverage(render_dir, out, tree, b)
        (render_dir / "quality.json").write_text(json.dumps({"silhouette_coverage": q}, indent=1))
        print(json.dumps({"building": b, "coverage_median_min": {k: (v["median"], v["min"]) for k, v in q["scales"].items()},
                          "fill_median": q["fill_median"], "in_frame_min": q["in_frame_min"]}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
