"""Render one building's multi-scale point clouds into fixed views of colour, depth, height and normals, plus a DSM.

Input: a scene dir with `scale{k}.ply` (z up, in the scene's unit: metres, or the drone orbit's radius
when the reconstruction had no GPS; its `quality.json` names it) and its COLMAP model `sparse/`, whose registered
cameras give the drone orbit's axis: every view is framed on the building standing on it
(reconstruction.framing). Output per scale k under `out/scale{k}/`:
`view{NN}_color.png` (uint8 RGB), `view{NN}_depth.npy` (float16 scene units, 0 = empty),
`view{NN}_height.npy` (float16 scene units above ground, 0 = empty; mask = depth > 0),
`view{NN}_normals.png` (world-frame normals as (n + 1) / 2 * 255, black = empty),
`dsm.npy` (float16 height above ground on the nadir grid, 0 = no data), `dsm.png` (colour-mapped),
`cameras.json` (every view's K and cam_from_world, the ground level, the DSM grid and the `unit`), and
`out/preview.png`: one row per scale of the colour views, the normals of the nadir and the DSM.
All scales share one set of cameras, so their views line up pixel for pixel.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from reconstruction.config import RenderConfig
from reconstruction.priors import (
    estimate_ground,
    fill_holes,
    height_above_ground,
    normals_from_depth,
    normals_to_rgb,
)
from reconstruction.framing import (
    centres_and_axes,
    estimate_orbit,
    in_view_share,
    registered_cameras,
    structure_near_axis,
)
from reconstruction.splat import splat_points
from reconstruction.views import ViewCamera, framed_view_set, view_set

log = logging.getLogger("skylink")

MAX_FRAMING_POINTS = 200_000


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("render.device is 'cuda' but no CUDA device is available (use auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"render.device: unknown value {name!r} (expected auto, cpu or cuda)")
    return torch.device(name)


def load_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz float32 [N,3] and rgb uint8 [N,3] of a PLY point cloud (grey when it has no colours)."""
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: point cloud not found")
    with open(path, "rb") as f:
        if f.read(3) != b"ply":
            raise ValueError(f"{path}: not a PLY file")
    pcd = o3d.io.read_point_cloud(str(path))
    xyz = np.asarray(pcd.points, dtype=np.float32)
    if pcd.has_colors():
        rgb = (np.clip(np.asarray(pcd.colors), 0, 1) * 255 + 0.5).astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 160, np.uint8)
    finite = np.isfinite(xyz).all(1)
    return xyz[finite], rgb[finite]


def points_axis(xyz: np.ndarray, ground: float) -> np.ndarray:
    """Fallback axis without cameras: the median (x, y) of the structures (points in the upper 3/4)."""
    top = float(np.percentile(xyz[:, 2], 99.5))
    above = xyz[xyz[:, 2] > ground + 0.25 * max(top - ground, 1e-6)]
    return np.median((above if len(above) >= 10 else xyz)[:, :2], axis=0)


def building_frame(xyz: np.ndarray, cameras: list[dict], cfg: RenderConfig) -> dict:
    """Where the target building stands and how far it reaches, from the cloud and the registered cameras.

    Returns {"target": (axis x, axis y, mid-height), "corners": the box the views must hold,
    "ground_z", "orbit": Orbit or None, "structure": Structure or None}.
    """
    ground = estimate_ground(xyz[:, 2], cfg.ground_percentile)
    centres, axes = centres_and_axes(cameras)
    orbit = estimate_orbit(centres, axes, cfg.center_prior)
    axis = orbit.axis if orbit is not None else points_axis(xyz, ground)
    dist = np.linalg.norm(xyz[:, :2] - axis, axis=1)
    if orbit is not None and orbit.radius > 0:
        search = cfg.axis_search * orbit.radius
    else:
        search = float(np.percentile(dist, cfg.radius_percentile))
    structure = None
    near = xyz[dist < search]
    if len(near) > MAX_FRAMING_POINTS:  # the structure's extent does not need every point of a dense cloud
        near = near[np.random.default_rng(0).choice(len(near), MAX_FRAMING_POINTS, replace=False)]
    if cameras and cfg.min_view_share > 0:
        seen = near[in_view_share(near.astype(np.float64), cameras) >= cfg.min_view_share]
        near = seen if len(seen) >= 50 else near
    try:
        structure = structure_near_axis(near, axis, ground, search)
        corners = structure.box_corners()
        top = structure.top
    except ValueError as e:
        # No recognisable structure: frame everything within the search radius.
        log.warning("render: %s; framing all points within %.3g of the axis", e, search)
        near = xyz[dist < search] if (dist < search).sum() >= 1 else xyz
        top = float(np.percentile(near[:, 2], 99.5))
        lo, hi = near[:, :2].min(0), near[:, :2].max(0)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (ground, top)])
    target = np.array([axis[0], axis[1], 0.5 * (ground + max(top, ground + 1e-6))])
    return {"target": target, "corners": corners, "ground_z": ground, "orbit": orbit, "structure": structure}


def cameras_for(frame: dict, cfg: RenderConfig) -> tuple[list[ViewCamera], float]:
    """The view set framed on the building (or on a bounding sphere of `view_radius`) and the nadir's half-extent."""
    kw = dict(image_size=cfg.image_size, fov_deg=cfg.fov_deg, oblique_elevation_deg=cfg.oblique_elevation_deg,
              low_elevation_deg=cfg.low_elevation_deg, projection=cfg.projection)
    if cfg.view_radius is not None:
        cams = view_set(frame["target"], float(cfg.view_radius), cfg.n_views, **kw)
    else:
        cams = framed_view_set(frame["target"], frame["corners"], cfg.n_views, margin=cfg.frame_margin, **kw)
    return cams, float(cams[0].width / (2.0 * cams[0].K[0, 0]))


def render_views(
    xyz: np.ndarray, rgb: np.ndarray, cams: list[ViewCamera], cfg: RenderConfig, ground_z: float,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Colour [V,H,W,3] uint8, depth / height [V,H,W] float32 and normals [V,H,W,3] of every camera."""
    V, S = len(cams), cfg.image_size
    out = {"color": np.full((V, S, S, 3), cfg.background, np.uint8), "depth": np.zeros((V, S, S), np.float32),
           "height": np.zeros((V, S, S), np.float32), "normals": np.zeros((V, S, S, 3), np.float32)}
    if len(xyz) == 0:
        return out
    pts = torch.from_numpy(xyz).to(device)
    cols = torch.from_numpy(rgb).to(device)
    # Orthographic and perspective views go in separate batches: the projection differs.
    for ortho in (True, False):
        idx = [i for i, c in enumerate(cams) if c.orthographic == ortho]
        if not idx:
            continue
        K = torch.tensor(np.stack([cams[i].K for i in idx]), dtype=torch.float32, device=device)
        T = torch.tensor(np.stack([cams[i].cam_from_world for i in idx]), dtype=torch.float32, device=device)
        r = splat_points(pts, cols, K, T, S, S, cfg.point_size, world_size=cfg.world_point_size,
                         orthographic=ortho, max_size=cfg.max_point_size, background=float(cfg.background))
        normals = normals_from_depth(r.depth, K, T, orthographic=ortho)
        height = height_above_ground(r.index, pts, ground_z)
        for j, i in enumerate(idx):
            out["color"][i] = r.color[j].cpu().numpy()
            out["depth"][i] = r.depth[j].cpu().numpy()
            out["height"][i] = height[j].cpu().numpy()
            out["normals"][i] = normals[j].cpu().numpy()
    return out


def dsm_from_nadir(height: np.ndarray, depth: np.ndarray, fill_px: int) -> tuple[np.ndarray, np.ndarray]:
    """DSM (height above ground of the highest point per cell) from the nadir view, small gaps filled.

    The nadir camera looks straight down, so its z-buffer keeps the highest point of each cell.
    Returns the DSM (0 = no data) and its valid mask.
    """
    return fill_holes(height, depth > 0, fill_px)


def dsm_to_png(dsm: np.ndarray, valid: np.ndarray, path: Path, vmax: float | None = None) -> None:
    """Colour-mapped DSM (turbo, 0 m .. vmax); cells without data are black."""
    vmax = float(vmax if vmax is not None else (dsm[valid].max() if valid.any() else 1.0))
    vmax = vmax if vmax > 0 else 1.0
    grey = np.clip(dsm / vmax * 255.0, 0, 255).astype(np.uint8)
    img = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)
    img[~valid] = 0
    cv2.imwrite(str(path), img)


def write_scale(out: Path, views: dict[str, np.ndarray], cams: list[ViewCamera], frame: dict, cfg: RenderConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for i, cam in enumerate(cams):
        stem = out / cam.name
        cv2.imwrite(f"{stem}_color.png", cv2.cvtColor(views["color"][i], cv2.COLOR_RGB2BGR))
        np.save(f"{stem}_depth.npy", views["depth"][i].astype(np.float16))
        np.save(f"{stem}_height.npy", views["height"][i].astype(np.float16))
        cv2.imwrite(f"{stem}_normals.png", cv2.cvtColor(normals_to_rgb(views["normals"][i]), cv2.COLOR_RGB2BGR))
    nadir = next(i for i, c in enumerate(cams) if c.kind == "nadir")
    dsm, dsm_valid = dsm_from_nadir(views["height"][nadir], views["depth"][nadir], cfg.dsm_fill_px)
    np.save(out / "dsm.npy", dsm.astype(np.float16))
    dsm_to_png(dsm, dsm_valid, out / "dsm.png")
    K = cams[nadir].K
    gsd = 1.0 / K[0, 0]
    c = frame["center"]
    meta = frame | {
        "views": {cam.name: cam.to_json() for cam in cams},
        # DSM cell (row r, col c) covers x in origin_x + [c, c+1) * gsd and y in origin_y - [r, r+1) * gsd.
        "dsm": {"gsd": gsd, "origin_x": c[0] - K[0, 2] * gsd, "origin_y": c[1] + K[1, 2] * gsd,
                "ground_z": frame["ground_z"], "nodata": 0.0, "view": cams[nadir].name},
    }
    (out / "cameras.json").write_text(json.dumps(meta, indent=1))
    masks = views["depth"] > 0
    return {"coverage": round(float(masks.mean()), 4), "dsm_coverage": round(float(dsm_valid.mean()), 4),
            "dsm_max_height": round(float(dsm.max()), 3)}


def preview_row(scale_dir: Path, cams: list[ViewCamera]) -> np.ndarray:
    """One strip for the preview: every colour view, the nadir normals and the DSM, framed in white."""
    tiles = [cv2.imread(str(scale_dir / f"{c.name}_color.png")) for c in cams]
    tiles += [cv2.imread(str(scale_dir / f"{cams[0].name}_normals.png")), cv2.imread(str(scale_dir / "dsm.png"))]
    return np.hstack([cv2.copyMakeBorder(t, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(255, 255, 255)) for t in tiles])


def scene_unit(scene_dir: Path) -> str:
    """The unit of a reconstructed scene's lengths, from its quality.json: "metre" when GPS or priors
    fixed the scale, "orbit radius" when the drone orbit did (SfM from pixels alone has no metric scale)."""
    try:
        unit = json.loads((Path(scene_dir) / "quality.json").read_text())["alignment"]["unit"]
    except (OSError, ValueError, KeyError, TypeError):
        return "metre"
    return unit if isinstance(unit, str) and unit else "metre"


def render_building(scene_dir: Path, out: Path, cfg: RenderConfig) -> dict:
    """Render every scale of the scene in `scene_dir` into `out/scale{k}/`; returns a small summary."""
    t0 = time.time()
    scene_dir, out = Path(scene_dir), Path(out)
    device = resolve_device(cfg.device)
    clouds = {k: load_points(scene_dir / f"scale{k}.ply") for k in cfg.scales}
    counts = {k: len(c[0]) for k, c in clouds.items()}
    if sum(counts.values()) == 0:
        raise ValueError(f"{scene_dir}: every scale point cloud is empty")
    for k, n in counts.items():
        if n == 0:
            log.warning("%s: scale%d.ply has no points; its views stay empty", scene_dir, k)
    # One frame and one camera set for all scales, so the scales' views are aligned pixel for pixel.
    xyz_all = np.concatenate([c[0] for c in clouds.values()])
    building = building_frame(xyz_all, registered_cameras(scene_dir), cfg)
    cams, radius = cameras_for(building, cfg)
    center, ground = building["target"], building["ground_z"]
    orbit, structure = building["orbit"], building["structure"]
    if orbit is None:
        log.warning("%s: no registered cameras to find the orbit axis; centred on the points", scene_dir)
    unit = scene_unit(scene_dir)
    frame = {"center": center.tolist(), "radius": radius, "ground_z": ground,
             "orbit": orbit.to_json() if orbit else {"source": "points"},
             "structure": structure.to_json() if structure else None,
             "unit": unit,
             "frame": "z up, OpenCV cameras (cam_from_world); lengths in `unit`",
             "files": "view{NN}_{color.png,depth.npy,height.npy,normals.png}; empty pixels: depth 0, height 0"}
    scales = {}
    rows = []
    for k, (xyz, rgb) in clouds.items():
        views = render_views(xyz, rgb, cams, cfg, ground, device)
        scales[str(k)] = {"points": int(len(xyz))} | write_scale(out / f"scale{k}", views, cams, frame, cfg)
        rows.append(preview_row(out / f"scale{k}", cams))
    cv2.imwrite(str(out / "preview.png"), np.vstack(rows))
    return {"scales": scales, "ground_z": round(ground, 3), "radius": round(radius, 3),
            "center": [round(float(v), 3) for v in center], "views": len(cams), "device": str(device),
            "axis_source": orbit.source if orbit else "points", "unit": unit,
            "render_seconds": round(time.time() - t0, 3)}
