"""Silhouette coverage of render views: the share of a building's true silhouette each splatted view covers.

Measuring only, after rendering. The ground truth is the synthetic world's: `meta/scene.ply` (faces
tagged with an `object` id, the building's index in `meta/buildings.json`) and the true drone cameras.
The target building's faces are ray cast (open3d RaycastingScene) from every render camera on a canvas
padded on every side, so the parts of the building that a view crops away count as uncovered.
The render cameras live in the reconstruction's frame: the mesh is brought into it by the similarity
that maps the true camera centres onto the registered ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reconstruction.views import ViewCamera


def building_triangles(mesh_path: Path, index: int) -> np.ndarray:
    """The triangles [F,3,3] of building `index` in the synthetic world's tagged mesh."""
    from reconstruction.quality import read_scene_mesh

    tris, obj = read_scene_mesh(Path(mesh_path))
    mine = tris[obj == index]
    if not len(mine):
        raise ValueError(f"{mesh_path}: no faces of building index {index}")
    return mine


def pixel_rays(cam: ViewCamera, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame ray origins and directions [(H+2p)*(W+2p),3] through pixel centres of a padded canvas."""
    u, v = np.meshgrid(np.arange(-pad, cam.width + pad) + 0.5, np.arange(-pad, cam.height + pad) + 0.5)
    K, R, t = cam.K, cam.cam_from_world[:, :3], cam.cam_from_world[:, 3]
    x = (u.ravel() - K[0, 2]) / K[0, 0]
    y = (v.ravel() - K[1, 2]) / K[1, 1]
    if cam.orthographic:
        origin = (np.c_[x, y, np.zeros_like(x)] - t) @ R  # R^T (p - t) for each row
        direction = np.broadcast_to(R[2], origin.shape)
    else:
        direction = np.c_[x, y, np.ones_like(x)] @ R
        direction = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        origin = np.broadcast_to(cam.center, direction.shape)
    return origin, direction


def silhouettes(tris: np.ndarray, cams: list[ViewCamera], pad: int) -> np.ndarray:
    """Masks [V, H+2p, W+2p] of the pixels whose ray hits the triangles (cameras of one size)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    flat = tris.reshape(-1, 3).astype(np.float32)
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(np.arange(len(flat), dtype=np.uint32).reshape(-1, 3)))
    out = []
    for cam in cams:
        o, d = pixel_rays(cam, pad)
        rays = o3d.core.Tensor(np.c_[o, d].astype(np.float32))
        hit = np.isfinite(scene.cast_rays(rays)["t_hit"].numpy())
        out.append(hit.reshape(cam.height + 2 * pad, cam.width + 2 * pad))
    return np.stack(out)


def view_coverage(sil: np.ndarray, depth: np.ndarray, pad: int) -> dict:
    """Coverage (share of the true silhouette covered by rendered pixels, cropped parts uncovered),
    in_frame (share of the silhouette inside the image) and fill (share of the image it occupies)."""
    h, w = depth.shape
    inner = sil[pad:pad + h, pad:pad + w]
    total = int(sil.sum())
    if total == 0:
        return {"coverage": None, "in_frame": None, "fill": 0.0, "silhouette_px": 0}
    return {"coverage": round(float((inner & (depth > 0)).sum()) / total, 4),
            "in_frame": round(float(inner.sum()) / total, 4),
            "fill": round(float(inner.mean()), 4), "silhouette_px": total}


def to_reconstruction_frame(points: np.ndarray, recon_centres: np.ndarray, true_centres: np.ndarray) -> np.ndarray:
    """Map points from the ground-truth frame into the reconstruction's, by the camera centres' similarity."""
    from reconstruction.align import estimate_similarity, orbit_radius

    radius = orbit_radius(recon_centres)
    sim, _ = estimate_similarity(true_centres, recon_centres, max_error=0.05 * max(radius, 1e-9))
    m = np.asarray(sim.matrix())
    return points @ m[:, :3].T + m[:, 3]


def measure(render_dir: Path, scales: list[int], cams: list[ViewCamera], tris: np.ndarray, pad: int | None = None) -> dict:
    """Per scale and view the coverage of the building's triangles (already in the render frame) by the renders.

    Returns {"scales": {k: {"views": {name: {...}}, "median", "min"}}, "fill_median", "in_frame_min"}.
    """
    pad = cams[0].width if pad is None else pad
    sils = silhouettes(tris, cams, pad)
    out: dict = {"pad_px": pad, "scales": {}}
    per_view = {}
    for k in scales:
        views = {}
        for cam, sil in zip(cams, sils):
            depth = np.load(Path(render_dir) / f"scale{k}" / f"{cam.name}_depth.npy").astype(np.float32)
            views[cam.name] = view_coverage(sil, depth, pad) | {"view": cam.kind}
        per_view[k] = views
        cov = [v["coverage"] for v in views.values() if v["coverage"] is not None]
        out["scales"][str(k)] = {"median": round(float(np.median(cov)), 4) if cov else None,
                                 "min": round(float(np.min(cov)), 4) if cov else None, "views": views}
    first = per_view[scales[0]].values() if scales else []
    fill = [v["fill"] for v in first]
    frame = [v["in_frame"] for v in first if v["in_frame"] is not None]
    out["fill_median"] = round(float(np.median(fill)), 4) if fill else None
    out["in_frame_min"] = round(float(np.min(frame)), 4) if frame else None
    return out


def silhouette_coverage(render_dir: Path, scene_dir: Path, tree: Path, building: str) -> dict | None:
    """The render stage's measuring step for one synthetic-world building; None without ground truth.

    Reads the render's cameras.json and depth maps, the reconstruction's registered cameras, and
    the world's meta/ (true cameras, buildings.json, scene.ply).
    """
    from reconstruction.framing import centres_and_axes, registered_cameras
    from reconstruction.meta import drone_meta

    tree, render_dir = Path(tree), Path(render_dir)
    gt = drone_meta(tree, building, tree / "train" / "drone" / building).ground_truth
    if not gt or not gt.get("mesh") or gt.get("building_index") is None:
        return None
    rec = {c["name"]: c for c in registered_cameras(scene_dir)}
    names = sorted(n for n in rec if n in gt["cameras"])
    if len(names) < 3:
        return None
    recon_c, _ = centres_and_axes([rec[n] for n in names])
    true_c, _ = centres_and_axes([{"cam_from_world": gt["cameras"][n]["cam_from_world"]} for n in names])
    tris = building_triangles(Path(gt["mesh"]), int(gt["building_index"]))
    tris = to_reconstruction_frame(tris.reshape(-1, 3), recon_c, true_c).reshape(-1, 3, 3)
    scales = sorted(int(p.name[5:]) for p in render_dir.glob("scale*") if p.name[5:].isdigit())
    views = json.loads((render_dir / f"scale{scales[0]}" / "cameras.json").read_text())["views"]
    cams = [ViewCamera.from_json(name, d) for name, d in sorted(views.items())]
    return measure(render_dir, scales, cams, tris)
